"""High availability: two `foreseer run` processes with Kopf peering never both act, and the
standby takes over when the active one goes away."""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path

import kmock
import pytest
from operator_stack import Level, Stack, StartReplica, load_query, metric, policy, replicas

from foreseer.lab.waiting import until

pytestmark = pytest.mark.integration

CHART_CRDS = Path(__file__).resolve().parents[2] / "charts" / "foreseer" / "crds"
PEERINGS = kmock.resource("kopf.dev", "v1", "clusterkopfpeerings")


async def test_two_replicas_with_peering_never_both_act_and_the_standby_takes_over(
    stack: Stack, start_replica: StartReplica,
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

    active = start_replica("active", "--peering-name=foreseer", "--priority=2")
    await until(lambda: peers() == 1, timeout=60, what="the first replica in the peering")
    standby = start_replica("standby", "--peering-name=foreseer", "--priority=1")
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
