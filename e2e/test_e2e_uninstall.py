"""A clean uninstall: with the policies deleted first (the operator lets go of them), `helm
uninstall` leaves nothing of the release behind. Only the CRDs stay, as Helm keeps every CRD
of a chart's crds/ folder so that uninstalling never deletes users' policies."""

from __future__ import annotations

from pathlib import Path

import pytest
from clusters import POLICIES, Cluster, eventually
from policies import policy
from releases import Release, leftovers, release_values, start_operator, wait_until_gone
from stacks import Stack

pytestmark = pytest.mark.e2e


def test_uninstall_leaves_no_resources_behind(stack: Stack, operator_mode: str,
                                              request: pytest.FixtureRequest,
                                              tmp_path: Path) -> None:
    cluster: Cluster = stack.cluster
    namespace = cluster.create_namespace("foreseer-e2e-uninstall")
    try:
        release = Release("foreseer-gone", namespace, release_values(
            namespace, stack.metering.url_for_operator, operator_mode,
            str(request.config.getoption("--image"))))
        operator = start_operator(cluster, release, operator_mode, tmp_path)
        try:
            cluster.create_deployment(namespace, "app", replicas=1)
            cluster.apply(policy(namespace, "app", mode="Observe"))
            eventually(lambda: cluster.condition(namespace, "app", "Ready"), 90,
                       "the operator to report on the policy")
            assert leftovers(cluster, release.name, [namespace]), "nothing was installed"
            cluster.delete_policies(namespace)
        finally:
            operator.stop()
        release.uninstall()
        wait_until_gone(cluster, release.name, [namespace])
        assert cluster.list(POLICIES, namespace) == []
        assert release.helm("list", "--all", "-q").split() == []
        crds = cluster.kubectl("get", "crd", "-o", "name").stdout.split()
        assert "customresourcedefinition.apiextensions.k8s.io/scalingpolicies.foreseer.dev" \
            in crds
    finally:
        cluster.delete_namespace(namespace)
