"""Fixtures of the operator's integration scenarios: a real Kopf operator (in-process, through
`foreseer.operator.running.operate`) against the realistic emulator and a real Prometheus."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from operator_stack import Replica, RunningOperator, Stack, StartOperator, StartReplica

from foreseer.lab.emulator import Emulator
from foreseer.lab.exporter import Exporter
from foreseer.lab.prometheus import PrometheusServer
from foreseer.lab.workloads import DeploymentController
from foreseer.operator.running import operate
from foreseer.operator.runtime import Runtime
from foreseer.operator.settings import (
    FittingSettings,
    MetricsAuth,
    PeeringSettings,
    PrometheusSettings,
    ScopeSettings,
    ServerSettings,
    Settings,
)


@pytest.fixture
async def start_operator(kubeconfig: Path) -> AsyncIterator[StartOperator]:
    """Starts operators (``await start_operator(prometheus_url)``); stops them all at teardown."""
    running: list[RunningOperator] = []

    async def start(prometheus_url: str, namespaces: tuple[str, ...] = (),
                    metrics_auth: MetricsAuth = MetricsAuth.NONE) -> RunningOperator:
        config = Settings(
            prometheus=PrometheusSettings(url=prometheus_url, timeout=2.0, retries=1),
            scope=ScopeSettings(namespaces=namespaces),
            server=ServerSettings(host="127.0.0.1", port=0, metrics_auth=metrics_auth),
            peering=PeeringSettings(standalone=True),
            fitting=FittingSettings(workers=1),
        )
        runtime = Runtime.create(config)
        stop_flag, ready_flag = threading.Event(), threading.Event()
        errors: list[BaseException] = []

        def main() -> None:
            try:
                asyncio.run(operate(config, stop_flag=stop_flag, ready_flag=ready_flag,
                                    runtime=runtime))
            except BaseException as exc:  # reported by stop() and by the start-up wait
                errors.append(exc)

        thread = threading.Thread(target=main, name="operator", daemon=True)
        operator = RunningOperator(runtime, thread, stop_flag, errors)
        running.append(operator)
        thread.start()
        if not await asyncio.to_thread(ready_flag.wait, 30):
            raise TimeoutError(f"the operator was not ready within 30s: {errors}")
        return operator

    yield start
    for operator in running:
        if operator.thread.is_alive():
            await operator.stop()


@pytest.fixture
async def stack(
    emulator: Emulator, deployments: DeploymentController, exporter: Exporter,
    prometheus_factory: Callable[..., PrometheusServer], start_operator: StartOperator,
) -> Stack:
    """Everything a scenario needs; Prometheus scrapes the exporter every second once started."""
    return Stack(emulator, exporter, prometheus_factory(targets=[exporter.target]),
                 start_operator)


@pytest.fixture
async def start_replica(stack: Stack, kubeconfig: Path,
                        tmp_path: Path) -> AsyncIterator[StartReplica]:
    """Starts operator processes on the stack's Prometheus (``start_replica(name, *flags)``);
    SIGTERMs them all at teardown."""
    started: list[Replica] = []

    def start(name: str, *flags: str) -> Replica:
        replica = Replica(stack.prometheus.url, list(flags), kubeconfig,
                          tmp_path / f"operator-{name}.log")
        started.append(replica)
        return replica

    yield start
    for replica in started:
        await replica.stop()
