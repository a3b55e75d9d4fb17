"""The learned capacity on the operator's own tick, on a frozen clock with a scripted
Prometheus: learned from history at the first tick, used to size, checkpointed in status,
and a drift raises CapacityChanged within the bound."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from test_operator_cycle import FakeCluster, body, cluster, run_ticks, runtime

from foreseer.operator.capacities import DRIFT_INTERVALS
from foreseer.operator.deciding import MetricOutage
from foreseer.operator.runtime import Runtime
from foreseer.predictors.series import Series
from harness.fakes import FrozenClock

__all__ = ["cluster", "runtime"]  # the cycle tests' fixtures, used here

PER_REPLICA_AT_FULL = 100.0  # so 0.7 utilisation is (0.7 - 0.05) / 0.95 * 100 = 68.4 rps
AT_TARGET = (0.7 - 0.05) / 0.95 * PER_REPLICA_AT_FULL


class ScriptedSource:
    """Prometheus answering per query: load, utilisation (avg(cpu)) or ready replicas."""

    def __init__(self) -> None:
        rng = np.random.default_rng(5)
        n = 2000
        self.ready = rng.integers(2, 12, n).astype(float)
        self.load = self.ready * rng.uniform(10, 90, n)
        self.util = 0.05 + 0.95 * self.load / self.ready / PER_REPLICA_AT_FULL \
            + rng.normal(0, 0.01, n)
        self.now: dict[str, float | MetricOutage] = {"load": 200.0, "cpu": 0.7, "ready": 2.0}
        self.queries: list[str] = []

    def kind(self, query: str) -> str:
        return "cpu" if "cpu" in query else "ready" if "replicas_ready" in query else "load"

    async def current(self, query: str, now: float, *,
                      tenant: str | None = None) -> float | MetricOutage:
        self.queries.append(query)
        return self.now[self.kind(query)]

    async def history(self, key: tuple[str, str, str], query: str, *, step: float,
                      window: float, now: float, tenant: str | None = None) -> Series | None:
        values = {"load": self.load, "cpu": self.util, "ready": self.ready}[self.kind(query)]
        return Series(now - step * len(values), step, values)

    def forget(self, namespace: str, name: str) -> None:
        pass

    async def close(self) -> None:
        pass


@pytest.fixture
def source() -> ScriptedSource:
    """Overrides the cycle tests' source, so their `runtime` fixture reads this one."""
    return ScriptedSource()


def policy(**metric: Any) -> dict[str, Any]:
    return body(mode="Reactive", metrics=[{
        "name": "rps", "query": "sum(rate(http_requests_total[1m]))",
        "utilization": {"query": "avg(cpu)", "target": 0.7}, **metric}])


async def test_the_first_tick_learns_the_capacity_sizes_with_it_and_checkpoints_it(
        runtime: Runtime, clock: FrozenClock, source: ScriptedSource,
        cluster: FakeCluster) -> None:
    source.now = {"load": 700.0, "cpu": 0.7, "ready": 2.0}
    await run_ticks(runtime, clock, policy(), 1)
    status = cluster.status_writes[-1]
    [capacity] = status["capacities"]
    assert capacity["trusted"] and capacity["samples"] == 2000
    assert abs(capacity["perReplica"] / AT_TARGET - 1) < 0.05
    assert status["recommendation"]["raw"] == math.ceil(700.0 / capacity["perReplica"])
    assert "learned capacity" in status["recommendation"]["sizedBy"]
    # The default ready-replicas query names the target and is scoped to the namespace.
    assert any('deployment="web"' in q and 'namespace="shop"' in q for q in source.queries)


async def test_a_restarted_operator_sizes_with_the_checkpointed_capacity(
        runtime: Runtime, clock: FrozenClock, source: ScriptedSource,
        cluster: FakeCluster) -> None:
    await run_ticks(runtime, clock, policy(), 1)
    saved = cluster.status_writes[-1]
    restarted = policy()
    restarted["status"] = saved
    runtime.memories.clear()
    source.load[:] = math.nan  # nothing to relearn from: only the checkpoint can size
    source.now = {"load": 1400.0, "cpu": 0.7, "ready": 2.0}
    await run_ticks(runtime, clock, restarted, 1)
    [capacity] = cluster.status_writes[-1]["capacities"]
    before = saved["capacities"][0]
    assert (capacity["perReplica"], capacity["fittedAt"]) == (before["perReplica"],
                                                              before["fittedAt"])
    assert capacity["driftStreak"] == 1  # 700 rps a replica at 70 % CPU is off the fit
    assert "learned capacity" in cluster.status_writes[-1]["recommendation"]["sizedBy"]


async def test_a_capacity_drop_raises_capacity_changed_within_the_bound_and_falls_back(
        runtime: Runtime, clock: FrozenClock, source: ScriptedSource,
        cluster: FakeCluster) -> None:
    cluster.replicas = 10
    source.now = {"load": 500.0, "cpu": 0.05 + 0.95 * 50 / PER_REPLICA_AT_FULL, "ready": 10.0}
    spec = policy(targetPerReplica=40)
    await run_ticks(runtime, clock, spec, 2)
    assert cluster.status_writes[-1]["capacities"][0]["trusted"]
    # A release makes each request cost 1/0.7 as much CPU.
    source.now = {"load": 500.0, "cpu": 0.05 + 0.95 * 50 / (0.7 * PER_REPLICA_AT_FULL),
                  "ready": 10.0}
    await run_ticks(runtime, clock, spec, DRIFT_INTERVALS)
    changed = [m for r, m, w in cluster.events if r == "CapacityChanged" and w]
    assert len(changed) == 1
    assert f"was {AT_TARGET:.3g}"[:7] in changed[0] and "targetPerReplica" in changed[0]
    [capacity] = cluster.status_writes[-1]["capacities"]
    assert not capacity["trusted"] and capacity["since"] is not None
    assert "targetPerReplica 40" in cluster.status_writes[-1]["recommendation"]["sizedBy"] \
        or "utilization" in cluster.status_writes[-1]["recommendation"]["sizedBy"]
    exposition = runtime.telemetry.exposition().decode()
    assert 'foreseer_capacity_changes_total{metric="rps",namespace="shop",policy="web"} 1.0' \
        in exposition
