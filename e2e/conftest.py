"""The e2e suite: the chart and the real operator against whatever cluster KUBECONFIG points to.

    make e2e                                   # operator on this machine (any cluster)
    pytest -m e2e e2e --operator image --image foreseer:0.1.0 --host-address 172.18.0.1
    make e2e-kind                              # a kind cluster, the image built and loaded

The tests run only when selected with ``-m e2e``; in a plain ``pytest`` run (``make test``) they
are skipped, and when no cluster answers they are skipped with the reason.

No test depends on what another left behind: each gets a fresh namespace of its own (deleted
afterwards), and a test that needs an operator launches its own stack in it: its Deployments,
their loads, a Prometheus, a release serving only that namespace, and its operator, all torn
down after the test. Only what holds no test state is shared: the cluster connection, the
event loop of the servers, and the chart's CRDs (applied once, as Helm would)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from chart.rendering import chart_crds
from clusters import Cluster, ClusterUnavailableError
from metering import BackgroundLoop
from stacks import Launch, Scenario, Stack, launch_stack

from foreseer.lab.prometheus import PrometheusMissingError, binaries

STACK = pytest.StashKey[Stack]()
"""The stack a test launched, for its failure report."""


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
    stack = item.stash.get(STACK, None)
    if report.when == "call" and report.failed and stack is not None:
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
def image(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--image"))


@pytest.fixture(scope="session")
def background_loop() -> Iterator[BackgroundLoop]:
    loop = BackgroundLoop()
    yield loop
    loop.close()


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> None:
    """The chart's CRDs, current, in the cluster (whichever test comes first needs them)."""
    cluster.apply_crds(list(chart_crds()))


@pytest.fixture(scope="session")
def doomed_namespaces(cluster: Cluster) -> Iterator[list[str]]:
    """Namespaces the tests deleted; their deletion is awaited (with a deadline) once, at the
    end, instead of after each test: each is the test's own, so nothing waits on them."""
    names: list[str] = []
    yield names
    if names:
        cluster.wait_until_namespaces_gone(names, timeout=300.0)


@pytest.fixture
def namespace(cluster: Cluster, crds: None, doomed_namespaces: list[str],
              request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for this test alone, deleted after it (labelled foreseer.dev/e2e)."""
    test = re.sub(r"[^a-z0-9]+", "-", request.node.originalname.lower())
    prefix = "foreseer-e2e-" + test.removeprefix("test-").strip("-")[:36].rstrip("-")
    name = cluster.create_namespace(prefix)
    try:
        yield name
    finally:
        cluster.delete_namespace(name, wait=False)
        doomed_namespaces.append(name)


@pytest.fixture
def launch(cluster: Cluster, namespace: str, operator_mode: str, image: str,
           background_loop: BackgroundLoop, request: pytest.FixtureRequest,
           tmp_path: Path) -> Iterator[Launch]:
    """`launch(*scenarios)` starts the test's stack in its namespace (at most once per test);
    it is torn down after the test: policies deleted while the operator runs, operator
    stopped, release uninstalled, Prometheus and the exporter stopped."""
    try:
        binaries()
    except PrometheusMissingError as exc:
        pytest.skip(str(exc))
    launched: list[Stack] = []

    def start(*scenarios: Scenario) -> Stack:
        assert not launched, "one stack per test"
        stack = launch_stack(cluster, namespace, scenarios, mode=operator_mode, image=image,
                             host_address=request.config.getoption("--host-address"),
                             loop=background_loop, workdir=tmp_path)
        launched.append(stack)
        request.node.stash[STACK] = stack
        return stack

    try:
        yield start
    finally:
        for stack in launched:
            stack.close()
