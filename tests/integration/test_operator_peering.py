"""High availability: two `foreseer run` processes with Kopf peering never both act, and the
standby takes over when the active one goes away."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import kmock
import pytest
from operator_stack import Level, Stack, load_query, metric, policy, replicas
from prometheus_client.parser import text_string_to_metric_families

from foreseer.lab.prometheus import free_port
from foreseer.lab.waiting import until

pytestmark = pytest.mark.integration

CHART_CRDS = Path(__file__).resolve().parents[2] / "charts" / "foreseer" / "crds"
PEERINGS = kmock.resource("kopf.dev", "v1", "clusterkopfpeerings")


class Replica:
    """One operator replica: `foreseer run` in its own process, with ``args`` (peering or
    sharding flags)."""

    def __init__(self, prometheus_url: str, args: list[str], kubeconfig: Path,
                 log: Path) -> None:
        self.port = free_port()
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "foreseer.operator", f"--prometheus-url={prometheus_url}",
             *args, "--metrics-host=127.0.0.1", f"--metrics-port={self.port}"],
            env={**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONSAFEPATH": "1"},
            stdout=self._log, stderr=subprocess.STDOUT)

    async def ticks(self, namespace: str, name: str) -> int:
        """Control cycles this replica finished for a policy (from its /metrics)."""
        url = f"http://127.0.0.1:{self.port}/metrics"
        try:
            async with aiohttp.ClientSession() as session, session.get(url) as response:
                text = await response.text()
        except aiohttp.ClientError:
            return -1  # not serving (yet, or any more)
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "foreseer_tick_seconds_count" and \
                        sample.labels == {"namespace": namespace, "policy": name}:
                    return int(sample.value)
        return 0

    async def stop(self) -> None:
        """SIGTERM, as Kubernetes does; Kopf then leaves the peering at once."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.process.wait, 30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                await asyncio.to_thread(self.process.wait, 10)
        self._log.close()


@pytest.fixture
async def replicas_factory(
    stack: Stack, kubeconfig: Path, tmp_path: Path,
) -> AsyncIterator[Callable[[int], Replica]]:
    started: list[Replica] = []

    def start(priority: int) -> Replica:
        replica = Replica(stack.prometheus.url,
                          ["--peering-name=foreseer", f"--priority={priority}"], kubeconfig,
                          tmp_path / f"operator-{priority}.log")
        started.append(replica)
        return replica

    yield start
    for replica in started:
        await replica.stop()


async def test_two_replicas_with_peering_never_both_act_and_the_standby_takes_over(
    stack: Stack, replicas_factory: Callable[[int], Replica],
) -> None:
    stack.emulator.install_crd_file(CHART_CRDS / "kopf-peerings.yaml")
    await stack.emulator.create_object(PEERINGS, {
        "apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering",
        "metadata": {"name": "foreseer"}})
    load = Level(250.0)
    await stack.workload("web", "shop", replicas=1, load=load)
    await stack.start_prometheus(load_query("web", "shop"))

    def peers() -> int:
        body = stack.emulator.read_object(PEERINGS, None, "foreseer") or {}
        return len(body.get("status") or {})

    active = replicas_factory(2)
    await until(lambda: peers() == 1, timeout=60, what="the first replica in the peering")
    standby = replicas_factory(1)
    await until(lambda: peers() == 2, timeout=60, what="the second replica in the peering")

    await stack.apply(policy("web", "shop", "web", [
        metric("load", load_query("web", "shop"), 100.0)]))
    await until(lambda: replicas(stack.emulator, "shop", "web") == 3, timeout=60,
                what="the active replica scaled the target")
    await until(lambda: _at_least(active.ticks("shop", "web"), 5), timeout=30,
                what="five ticks of the active replica")
    assert await standby.ticks("shop", "web") == 0

    await active.stop()
    load.value = 450.0
    await until(lambda: replicas(stack.emulator, "shop", "web") == 5, timeout=90,
                what="the standby took over and scaled")
    assert await standby.ticks("shop", "web") > 0


async def _at_least(value: Awaitable[int], minimum: int) -> bool:
    return await value >= minimum
