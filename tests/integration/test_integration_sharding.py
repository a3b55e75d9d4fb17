"""Sharding against the emulator: two operator replicas, each a Runtime with its own
Kubernetes adapter talking HTTP, hold shard Leases (real resourceVersions, real 409s), split
the policies between them, and one takes the other's share over when it is lost. Frozen
clock; only Prometheus is scripted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_integration_fencing import inline_pool

from foreseer.lab.emulator import DEPLOYMENTS, Emulator, deployment
from foreseer.operator.clusters import Cluster
from foreseer.operator.cycle import tick
from foreseer.operator.fitting import Fitter
from foreseer.operator.leases import GROUP_LABEL, Sharder
from foreseer.operator.runtime import Runtime
from foreseer.operator.settings import FittingSettings, Settings, ShardingSettings
from foreseer.operator.sharding import shard_of
from foreseer.operator.specs import GROUP, PLURAL, VERSION
from harness.fakes import FakeSource, FrozenClock

pytestmark = pytest.mark.integration
POLICIES = f"{GROUP}/{VERSION}/{PLURAL}"
LEASES = "coordination.k8s.io/v1/leases"
SHARDS = 4
LEASE, RENEW = 15.0, 5.0
NAMES = [f"web-{i}" for i in range(8)]


@pytest.fixture
async def replicas(kubeconfig: Path, clock: FrozenClock) -> AsyncIterator[dict[str, Runtime]]:
    """Two replicas of one sharded operator; every policy's load asks for 3 pods."""
    runtimes = {}
    for identity in "ab":
        config = Settings(sharding=ShardingSettings(
            shards=SHARDS, identity=identity, namespace="foreseer", lease_seconds=LEASE,
            renew_seconds=RENEW))
        cluster = Cluster()
        runtime = Runtime(settings=config, prometheus=FakeSource(300.0),  # type: ignore[arg-type]
                          cluster=cluster, fitter=Fitter(FittingSettings(), pool=inline_pool),
                          clock=clock, sharder=Sharder(cluster, config.sharding, clock))
        runtimes[identity] = runtime
    yield runtimes
    for runtime in runtimes.values():
        await runtime.close()


@pytest.fixture
async def policies(emulator: Emulator) -> list[str]:
    for name in NAMES:
        await emulator.create_object(DEPLOYMENTS, deployment(name, "shop", 1))
        await emulator.create_object(POLICIES, {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "ScalingPolicy",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                        "name": name},
                     "minReplicas": 1, "maxReplicas": 20, "interval": "10s", "mode": "Reactive",
                     "metrics": [{"name": "rps", "query": 'sum(rate(x{namespace="shop"}[1m]))',
                                  "targetPerReplica": 100}]}})
    return NAMES


async def rounds(replicas: dict[str, Runtime], clock: FrozenClock, count: int) -> None:
    for _ in range(count):
        for runtime in replicas.values():
            assert runtime.sharder is not None
            await runtime.sharder.step()
        clock.now += RENEW


async def tick_all(emulator: Emulator, runtimes: dict[str, Runtime]) -> None:
    for name in NAMES:
        for runtime in runtimes.values():
            await tick(runtime, emulator.read_object(POLICIES, "shop", name))


def scaled(emulator: Emulator) -> dict[str, int]:
    return {n: emulator.read_object(DEPLOYMENTS, "shop", n)["spec"]["replicas"] for n in NAMES}


async def test_two_replicas_split_the_shards_and_each_policy_is_acted_on_by_its_owner_alone(
        emulator: Emulator, replicas: dict[str, Runtime], policies: list[str],
        clock: FrozenClock) -> None:
    await rounds(replicas, clock, 3)
    held = {i: r.sharder.shards() for i, r in replicas.items()}  # type: ignore[union-attr]
    assert held["a"] | held["b"] == set(range(SHARDS)) and not held["a"] & held["b"]
    assert len(held["a"]) == len(held["b"]) == SHARDS // 2

    scale_patches = emulator.before_next("PATCH", DEPLOYMENTS, lambda: asyncio.sleep(0),
                                         subresource="scale", times=1_000)
    await tick_all(emulator, replicas)
    assert scaled(emulator) == dict.fromkeys(NAMES, 3)
    assert scale_patches.hits == len(NAMES)  # once each, never by both replicas
    for name in NAMES:
        owner = next(i for i, s in held.items() if shard_of("shop", name, SHARDS) in s)
        assert set(replicas[owner].memories) >= {("shop", name)}
        other = replicas["b" if owner == "a" else "a"]
        assert ("shop", name) not in other.memories

    leases = emulator.list_objects(LEASES)
    shard_leases = [x for x in leases if x["metadata"]["name"].startswith("foreseer-shard-")]
    assert len(shard_leases) == SHARDS and len(leases) == SHARDS + 2  # and one member each
    for lease in leases:
        assert lease["metadata"]["labels"][GROUP_LABEL] == "foreseer"
        assert isinstance(lease["spec"]["leaseDurationSeconds"], int)
        assert lease["spec"]["renewTime"].endswith("Z")


async def test_a_lost_replicas_policies_are_taken_over_within_the_lease_and_a_renewal(
        emulator: Emulator, replicas: dict[str, Runtime], policies: list[str],
        clock: FrozenClock) -> None:
    await rounds(replicas, clock, 3)
    await tick_all(emulator, replicas)
    lost = replicas.pop("a")  # it stops renewing: a crash or a partition
    lost_at = clock.now
    survivor = replicas["b"]
    assert survivor.sharder is not None
    while survivor.sharder.shards() != set(range(SHARDS)):
        await rounds(replicas, clock, 1)
        assert clock.now - lost_at <= LEASE + 2 * RENEW
    assert lost.sharder is not None and lost.sharder.shards() == set()

    for name in NAMES:  # the load doubles: only the survivor may follow it
        emulator_policy = emulator.read_object(POLICIES, "shop", name)
        lost.prometheus.value = survivor.prometheus.value = 600.0  # type: ignore[attr-defined]
        await tick(lost, emulator_policy)
        await tick(survivor, emulator_policy)
    assert scaled(emulator) == dict.fromkeys(NAMES, 6)
    assert not lost.memories
    await lost.close()


async def test_a_graceful_stop_gives_the_shards_to_the_other_replica_at_its_next_round(
        emulator: Emulator, replicas: dict[str, Runtime], policies: list[str],
        clock: FrozenClock) -> None:
    await rounds(replicas, clock, 3)
    leaving = replicas["a"].sharder
    assert leaving is not None
    await leaving.release_all()
    staying = replicas["b"].sharder
    assert staying is not None
    await staying.step()
    assert staying.shards() == set(range(SHARDS))
    names = {x["metadata"]["name"] for x in emulator.list_objects(LEASES)}
    assert "foreseer-member-a" not in names and "foreseer-member-b" in names
