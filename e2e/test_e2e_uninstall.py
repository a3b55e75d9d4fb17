"""A clean uninstall: with the policies deleted first (the operator lets go of them), `helm
uninstall` leaves nothing of the release behind. Only the CRDs stay, as Helm keeps every CRD
of a chart's crds/ folder so that uninstalling never deletes users' policies."""

from __future__ import annotations

import pytest
from clusters import POLICIES, eventually
from metering import Level
from policies import policy
from releases import leftovers, wait_until_gone
from stacks import LOW, Launch, Scenario

pytestmark = pytest.mark.e2e


def test_uninstall_leaves_no_resources_behind(launch: Launch) -> None:
    stack = launch(Scenario("app", 1, Level(LOW)))
    cluster, namespace, release = stack.cluster, stack.namespace, stack.release
    cluster.apply(policy(namespace, "app", mode="Observe"))
    eventually(lambda: cluster.condition(namespace, "app", "Ready"), 90,
               "the operator to report on the policy")
    assert leftovers(cluster, release.name, [namespace]), "nothing was installed"
    assert release.name in release.listed()

    stack.uninstall()  # policies deleted while the operator runs, operator stopped, uninstalled
    wait_until_gone(cluster, release.name, [namespace])
    assert cluster.list(POLICIES, namespace) == []
    assert release.listed() == []
    crds = cluster.kubectl("get", "crd", "-o", "name").stdout.split()
    assert "customresourcedefinition.apiextensions.k8s.io/scalingpolicies.foreseer.dev" \
        in crds
