"""The e2e suite: the chart and the real operator against whatever cluster KUBECONFIG points to.

    make e2e                                   # operator on this machine (any cluster)
    pytest -m e2e e2e --operator image --image foreseer:0.1.0 --host-address 172.18.0.1
    make e2e-kind                              # a kind cluster, the image built and loaded

The tests run only when selected with ``-m e2e``; in a plain ``pytest`` run (``make test``) they
are skipped, and when no cluster answers they are skipped with the reason. One namespace and
one namespaced release serve every scenario (each with its own Deployment and policy); the
uninstall scenario installs a release of its own."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from clusters import Cluster, ClusterUnavailableError
from metering import BackgroundLoop, Metering, ReplicaReader
from releases import Release, release_values, start_operator
from stacks import SCENARIOS, Stack

from harness.exporter import Workload
from harness.prometheus import PrometheusMissingError, binaries


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("foreseer e2e")
    group.addoption("--operator", choices=["local", "image"],
                    default=os.environ.get("FORESEER_E2E_OPERATOR", "local"),
                    help="run the operator on this machine (local) or in the cluster (image)")
    group.addoption("--image", default=os.environ.get("FORESEER_E2E_IMAGE", "foreseer:0.1.0"),
                    help="operator image for --operator image, already loadable by the nodes")
    group.addoption("--host-address", default=os.environ.get("FORESEER_E2E_HOST_ADDRESS"),
                    help="address at which pods reach this machine (--operator image), "
                         "e.g. the kind network's gateway")


def _e2e_selected(config: pytest.Config) -> bool:
    """True when the run asked for e2e tests (``-m e2e``), not merely collected them."""
    expression = config.getoption("markexpr") or ""
    return bool(re.search(r"(?<!not )\be2e\b", expression))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _e2e_selected(config):
        return
    skip = pytest.mark.skip(reason="e2e tests need a cluster and run only with `-m e2e` "
                                   "(make e2e, make e2e-kind)")
    for item in items:
        if item.get_closest_marker("e2e"):
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """A failing scenario's report carries the operator's recent log: the why of a replica
    count is in there, and an in-cluster operator's pod is gone after the run."""
    report: pytest.TestReport = yield
    stack = getattr(item, "funcargs", {}).get("stack")
    if report.when == "call" and report.failed and isinstance(stack, Stack):
        report.sections.append(("foreseer operator log",
                                stack.operator.diagnostics(stack.cluster)))
    return report


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    """The cluster of the current kubeconfig context; skips the suite when none answers."""
    try:
        return Cluster.connect()
    except ClusterUnavailableError as exc:
        pytest.skip(f"no cluster: {exc}")


@pytest.fixture(scope="session")
def operator_mode(request: pytest.FixtureRequest) -> str:
    mode = str(request.config.getoption("--operator"))
    if mode == "image" and not request.config.getoption("--host-address"):
        pytest.fail("--operator image needs --host-address: where pods reach this machine's "
                    "Prometheus (for kind: the gateway of the `kind` docker network)")
    return mode


@pytest.fixture(scope="session")
def background_loop() -> Iterator[BackgroundLoop]:
    loop = BackgroundLoop()
    yield loop
    loop.close()


@pytest.fixture(scope="session")
def stack(cluster: Cluster, operator_mode: str, background_loop: BackgroundLoop,
          request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    try:
        binaries()
    except PrometheusMissingError as exc:
        pytest.skip(str(exc))
    workdir = tmp_path_factory.mktemp("e2e")
    namespace = cluster.create_namespace("foreseer-e2e")
    metering = Metering(workdir, background_loop,
                        relay_host=request.config.getoption("--host-address")
                        if operator_mode == "image" else None)
    try:
        for scenario in SCENARIOS.values():
            cluster.create_deployment(namespace, scenario.name, scenario.replicas)
        replicas = ReplicaReader(cluster, namespace)
        metering.start([Workload(s.name, namespace, s.load, replicas.of(s.name))
                        for s in SCENARIOS.values()], now=time.time())
        release = Release("foreseer-e2e", namespace, release_values(
            namespace, metering.url_for_operator, operator_mode,
            str(request.config.getoption("--image"))))
        operator = start_operator(cluster, release, operator_mode, workdir)
        try:
            yield Stack(cluster, namespace, metering, release, operator)
        finally:
            try:
                cluster.delete_policies(namespace)
            finally:
                operator.stop()
                release.uninstall()
    finally:
        metering.close()
        cluster.delete_namespace(namespace)


@pytest.fixture
def apply_policy(stack: Stack) -> Iterator[Callable[[dict[str, Any]], None]]:
    """`kubectl apply`s policies into the stack's namespace; deletes them after the test
    (waiting for the operator to let go), so scenarios do not act on each other."""
    names: list[str] = []

    def apply(manifest: dict[str, Any]) -> None:
        stack.cluster.apply(manifest)
        names.append(manifest["metadata"]["name"])

    yield apply
    for name in names:
        stack.cluster.delete_policy(stack.namespace, name)
