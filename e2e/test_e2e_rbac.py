"""The chart's RBAC as the API server's authorizer applies it to the operator's
ServiceAccount: everything the loop needs, nothing else, and nowhere else."""

from __future__ import annotations

from pathlib import Path

import pytest
from stacks import Stack

pytestmark = pytest.mark.e2e

SP = "scalingpolicies.foreseer.dev"
# (verb, resource, flags...)
ALLOWED = [
    ("get", SP), ("list", SP), ("watch", SP), ("patch", SP),
    ("patch", SP, "--subresource=status"),
    ("get", "deployments.apps", "--subresource=scale"),
    ("patch", "deployments.apps", "--subresource=scale"),
    ("patch", "statefulsets.apps", "--subresource=scale"),
    ("list", "deployments.apps"), ("watch", "pods"),
    ("create", "events"),
]
DENIED = [
    ("create", SP), ("delete", SP), ("update", SP),
    ("patch", "deployments.apps"), ("update", "deployments.apps"), ("delete", "deployments.apps"),
    ("create", "pods"), ("delete", "pods"), ("get", "secrets"), ("list", "configmaps"),
    ("patch", "events"), ("create", "roles.rbac.authorization.k8s.io"),
]


@pytest.fixture(scope="module")
def account_kubeconfig(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return stack.cluster.service_account_kubeconfig(
        stack.namespace, stack.release.service_account(),
        tmp_path_factory.mktemp("rbac") / "kubeconfig")


@pytest.mark.parametrize("ask", ALLOWED, ids=[" ".join(a) for a in ALLOWED])
def test_the_operator_may(stack: Stack, account_kubeconfig: Path,
                          ask: tuple[str, ...]) -> None:
    assert stack.cluster.can_i(account_kubeconfig, stack.namespace, *ask)


@pytest.mark.parametrize("ask", DENIED, ids=[" ".join(a) for a in DENIED])
def test_the_operator_may_not(stack: Stack, account_kubeconfig: Path,
                              ask: tuple[str, ...]) -> None:
    assert not stack.cluster.can_i(account_kubeconfig, stack.namespace, *ask)


def test_the_operator_may_write_only_its_own_peering_object(stack: Stack,
                                                            account_kubeconfig: Path) -> None:
    own = f"kopfpeerings.kopf.dev/{stack.release.name}"
    assert stack.cluster.can_i(account_kubeconfig, stack.namespace, "patch", own)
    assert not stack.cluster.can_i(account_kubeconfig, stack.namespace, "patch",
                                   "kopfpeerings.kopf.dev/someone-else")


def test_a_namespaced_operator_has_no_rights_elsewhere(stack: Stack,
                                                       account_kubeconfig: Path) -> None:
    for verb, resource in [("list", SP), ("patch", "deployments.apps")]:
        assert not stack.cluster.can_i(account_kubeconfig, "default", verb, resource)
    assert not stack.cluster.can_i(account_kubeconfig, stack.namespace, "list", "namespaces")
