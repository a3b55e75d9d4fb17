"""Fixtures of the realistic harness (tests/harness): emulator, Deployment controller, exporter
and a real Prometheus. Every wait has a deadline; every process started here is stopped here."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from foreseer.lab.emulator import Emulator, scalingpolicy_crd, serving
from foreseer.lab.exporter import Exporter
from foreseer.lab.prometheus import PrometheusMissingError, PrometheusServer, binaries
from foreseer.lab.workloads import DeploymentController
from harness.fakes import FrozenClock


@pytest.fixture
def clock() -> FrozenClock:
    """Wall time that moves only when the test sets it (the operator tests' one clock)."""
    return FrozenClock()


@pytest.fixture(scope="session")
def prometheus_binaries() -> tuple[str, str]:
    """Paths of prometheus and promtool; skips the test (with the reason) when missing."""
    try:
        return binaries()
    except PrometheusMissingError as exc:
        pytest.skip(str(exc))


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    """A realistic Kubernetes emulator on a loopback port, with the ScalingPolicy CRD."""
    async with serving() as emulator:
        emulator.install_crd(scalingpolicy_crd())
        yield emulator


@pytest.fixture
def kubeconfig(emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kubeconfig for the emulator, also exported as KUBECONFIG for clients and Kopf."""
    path = emulator.write_kubeconfig(tmp_path / "kubeconfig")
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


@pytest.fixture
async def deployments(emulator: Emulator) -> AsyncIterator[DeploymentController]:
    """Turns Deployments' replicas into pods that become Ready after 1s, with a status."""
    async with DeploymentController(emulator, ready_after=1.0) as controller:
        yield controller


@pytest.fixture
async def exporter() -> AsyncIterator[Exporter]:
    """A live exporter with no workloads yet: add `foreseer.lab.exporter.Workload`s to it."""
    async with Exporter() as exporter:
        yield exporter


@pytest.fixture
def prometheus_factory(
    prometheus_binaries: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., PrometheusServer]]:
    """Makes (not yet started) Prometheus servers; stops every one of them at teardown.

    ``server = prometheus_factory(targets=[exporter.target]); server.backfill(...); server.start()``
    """
    servers: list[PrometheusServer] = []

    def make(targets: list[str] | None = None, scrape_interval: str = "1s") -> PrometheusServer:
        server = PrometheusServer(tmp_path_factory.mktemp("prometheus"), targets or [],
                                  scrape_interval)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()
