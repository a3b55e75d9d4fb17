"""The chart's RBAC as the API server's authorizer applies it to the operator's
ServiceAccount: everything the loop needs, nothing else, and nowhere else; and the running
operator (namespaced, as every release of this suite) is never refused a request.

Each test installs its own release into its own namespace; the authorizer questions need no
operator process (the release runs none: replicaCount 0)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from clusters import Cluster, eventually
from metering import Level
from policies import policy
from releases import Release, release_values
from stacks import LOW, Launch, Scenario, release_name

pytestmark = pytest.mark.e2e

SP = "scalingpolicies.foreseer.dev"
# (verb, resource, flags...)
ALLOWED = [
    ("get", SP), ("list", SP), ("watch", SP), ("patch", SP),
    ("patch", SP, "--subresource=status"),
    ("get", "deployments.apps", "--subresource=scale"),
    ("patch", "deployments.apps", "--subresource=scale"),
    ("patch", "statefulsets.apps", "--subresource=scale"),
    ("list", "pods"), ("list", "horizontalpodautoscalers.autoscaling"),
    ("create", "events"),
]
DENIED = [
    ("create", SP), ("delete", SP), ("update", SP),
    ("get", "deployments.apps"), ("list", "deployments.apps"),
    ("patch", "deployments.apps"), ("update", "deployments.apps"), ("delete", "deployments.apps"),
    ("create", "pods"), ("delete", "pods"), ("watch", "pods"), ("get", "secrets"),
    ("list", "configmaps"), ("patch", "horizontalpodautoscalers.autoscaling"),
    ("patch", "events"), ("create", "roles.rbac.authorization.k8s.io"),
]
CLUSTER_SCOPE_DENIED = [
    # Asked at cluster scope. Kopf lists and watches these cluster-wide only with its scanning
    # on; the operator turns it off when it serves named namespaces
    # (foreseer.operator.running.kopf_settings), so a namespaced release needs neither.
    ("list", "namespaces"), ("watch", "namespaces"),
    ("list", "customresourcedefinitions.apiextensions.k8s.io"),
    ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
    # Granted only with metrics.auth=kubernetes (below).
    ("create", "tokenreviews.authentication.k8s.io"),
    ("create", "subjectaccessreviews.authorization.k8s.io"),
]
METRICS_AUTH_ALLOWED = [
    # Cluster-scoped resources, so a ClusterRole even for this namespaced release.
    ("create", "tokenreviews.authentication.k8s.io"),
    ("create", "subjectaccessreviews.authorization.k8s.io"),
]
REFUSED = re.compile(r"forbidden|not enough permissions", re.IGNORECASE)
"""How a refused request shows in the operator's log (Kopf's retries and fallbacks)."""


@dataclass
class Account:
    release: Release
    kubeconfig: Path


@pytest.fixture
def account(cluster: Cluster, namespace: str, image: str, tmp_path: Path,
            request: pytest.FixtureRequest) -> Iterator[Account]:
    """A release of its own in the test's namespace, and a kubeconfig of its ServiceAccount;
    indirect parametrisation adds values (e.g. metrics.auth)."""
    values = release_values(namespace, "http://prometheus.invalid:9090", "local", image)
    values.update(getattr(request, "param", {}))
    release = Release(release_name(namespace), namespace, values)  # no operator process
    try:
        release.install()
        yield Account(release, cluster.service_account_kubeconfig(
            namespace, release.service_account(), tmp_path / "kubeconfig"))
    finally:
        release.uninstall(missing_ok=True)


def refused_asks(cluster: Cluster, account: Account, namespace: str | None,
                 asks: Sequence[tuple[str, ...]], expected: bool) -> list[str]:
    """The asks whose answer is not `expected`."""
    return [" ".join(ask) for ask in asks
            if cluster.can_i(account.kubeconfig, namespace, *ask) is not expected]


def test_the_operator_may_everything_its_loop_needs(cluster: Cluster, namespace: str,
                                                    account: Account) -> None:
    assert refused_asks(cluster, account, namespace, ALLOWED, expected=True) == []


def test_the_operator_may_nothing_else(cluster: Cluster, namespace: str,
                                       account: Account) -> None:
    assert refused_asks(cluster, account, namespace, DENIED, expected=False) == []


def test_the_operator_may_write_only_its_own_peering_object(cluster: Cluster, namespace: str,
                                                            account: Account) -> None:
    own = f"kopfpeerings.kopf.dev/{account.release.name}"
    assert cluster.can_i(account.kubeconfig, namespace, "patch", own)
    assert not cluster.can_i(account.kubeconfig, namespace, "patch",
                             "kopfpeerings.kopf.dev/someone-else")


def test_a_namespaced_operator_has_no_rights_elsewhere(cluster: Cluster,
                                                       account: Account) -> None:
    elsewhere = [("list", SP), ("patch", "deployments.apps")]
    assert refused_asks(cluster, account, "default", elsewhere, expected=False) == []
    assert refused_asks(cluster, account, None, CLUSTER_SCOPE_DENIED, expected=False) == []


@pytest.mark.parametrize("account", [{"metrics": {"auth": "kubernetes"}}], indirect=True,
                         ids=["metrics-auth"])
def test_with_metrics_auth_the_operator_may_review_tokens_and_access_and_nothing_more(
        cluster: Cluster, namespace: str, account: Account) -> None:
    assert refused_asks(cluster, account, None, METRICS_AUTH_ALLOWED, expected=True) == []
    assert refused_asks(cluster, account, namespace, DENIED, expected=False) == []
    others = [ask for ask in CLUSTER_SCOPE_DENIED if ask not in METRICS_AUTH_ALLOWED]
    assert refused_asks(cluster, account, None, others, expected=False) == []
    # The metrics reader is Prometheus' to be bound to; the operator is not.
    assert not cluster.can_i(account.kubeconfig, None, "get", "/metrics")


def test_the_namespaced_operator_is_never_refused_a_request(launch: Launch) -> None:
    """With only its Role, the operator starts, serves a policy, and asks for nothing it is
    refused: Kopf lists no namespaces and watches no CRDs cluster-wide (those 403s used to
    be retried with backoff for about a minute, each logged, before Kopf fell back)."""
    stack = launch(Scenario("app", 2, Level(LOW)))
    cluster, namespace = stack.cluster, stack.namespace
    cluster.apply(policy(namespace, "app", mode="Observe"))
    eventually(lambda: cluster.condition(namespace, "app", "Ready"), 120,
               "the operator to report on the policy")
    log = stack.operator.log(cluster)
    assert log, "no operator log to check"
    assert [line for line in log.splitlines() if REFUSED.search(line)] == []
