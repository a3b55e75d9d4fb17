"""Sharding on Leases, on a frozen clock: each replica's `Sharder` against an in-memory Lease
store that refuses stale writes with 409 as the API server does (tests/harness/fakes.py).
Everything of the operator's own (the plan, the rounds, the hold, the tick) is real."""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_operator_cycle import (
    FakeCluster,
    body,
    cluster,
    failing_fit,
    inline_pool,
    run_ticks,
    source,
)

from foreseer.operator.clusters import ClusterError
from foreseer.operator.cycle import tick
from foreseer.operator.fitting import Fitter
from foreseer.operator.leases import Sharder
from foreseer.operator.runtime import Runtime
from foreseer.operator.settings import FittingSettings, Settings, ShardingSettings
from foreseer.operator.sharding import shard_of
from harness.fakes import FakeLeases, FakeSource, FrozenClock

__all__ = ["cluster", "source"]  # the cycle tests' fixtures, used here

SHARDS = 10
LEASE = 15.0
RENEW = 5.0


class Link:
    """One replica's connection to the shared Lease store, which a test can cut."""

    def __init__(self, store: FakeLeases) -> None:
        self.store, self.cut = store, False

    def __getattr__(self, name: str) -> Any:
        call = getattr(self.store, name)

        async def through(*args: Any, **kwargs: Any) -> Any:
            if self.cut:
                raise ClusterError("the API server did not answer")
            return await call(*args, **kwargs)

        return through


def replica(store: FakeLeases, clock: FrozenClock, identity: str,
            shards: int = SHARDS) -> Sharder:
    return Sharder(Link(store), ShardingSettings(  # type: ignore[arg-type]
        shards=shards, identity=identity, namespace="foreseer", lease_seconds=LEASE,
        renew_seconds=RENEW), clock)


def owners(replicas: Mapping[str, Sharder]) -> dict[int, list[str]]:
    held = collections.defaultdict(list)
    for name, r in replicas.items():
        for shard in r.shards():
            held[shard].append(name)
    return held


async def rounds(replicas: Mapping[str, Sharder], clock: FrozenClock, count: int,
                 check: bool = True) -> None:
    """``count`` renewal periods: every replica steps once per period; between every two
    steps no shard may be held by two replicas."""
    for _ in range(count):
        for r in replicas.values():
            # As Sharder.run: a failed round is lost, and the hold lapses on its own.
            with contextlib.suppress(ClusterError):
                await r.step()
            if check:
                assert all(len(h) == 1 for h in owners(replicas).values()), owners(replicas)
        clock.now += RENEW


@given(namespace=st.text(min_size=1, max_size=20), name=st.text(min_size=1, max_size=40),
       shards=st.integers(1, 64))
def test_a_policy_always_falls_in_the_same_shard_within_range(
        namespace: str, name: str, shards: int) -> None:
    shard = shard_of(namespace, name, shards)
    assert 0 <= shard < shards
    assert shard == shard_of(namespace, name, shards)


def test_the_shard_hash_does_not_change_between_versions() -> None:
    # A changed hash would move every policy to another replica at an upgrade: pinned.
    assert [shard_of("shop", f"web-{i}", 10) for i in range(8)] == [1, 3, 0, 1, 0, 0, 0, 6]
    assert shard_of("bank", "api", 7) == 1


def test_policies_spread_evenly_over_the_shards() -> None:
    counts = collections.Counter(shard_of(f"team-{i % 50}", f"app-{i}", SHARDS)
                                 for i in range(10_000))
    assert len(counts) == SHARDS
    assert all(850 <= c <= 1150 for c in counts.values()), counts


async def test_a_lone_replica_takes_every_shard_in_its_first_round() -> None:
    clock, store = FrozenClock(), FakeLeases()
    a = replica(store, clock, "a")
    await a.step()
    assert a.shards() == set(range(SHARDS))


async def test_a_replica_that_joins_gets_its_share_and_no_shard_is_ever_held_twice() -> None:
    clock, store = FrozenClock(), FakeLeases()
    group = {"a": replica(store, clock, "a")}
    await rounds(group, clock, 1)
    group["b"] = replica(store, clock, "b")
    await rounds(group, clock, 3)
    assert {len(r.shards()) for r in group.values()} == {SHARDS // 2}
    assert set(owners(group)) == set(range(SHARDS))


async def test_a_lost_replicas_shards_are_taken_over_within_the_lease_and_one_renewal() -> None:
    clock, store = FrozenClock(), FakeLeases()
    group = {"a": replica(store, clock, "a"), "b": replica(store, clock, "b")}
    await rounds(group, clock, 3)
    lost_at = clock.now
    group["a"].api.cut = True  # type: ignore[attr-defined]  # a crash, or a partition
    while group["b"].shards() != set(range(SHARDS)):
        await rounds(group, clock, 1)
        assert clock.now - lost_at <= LEASE + 2 * RENEW, "the takeover took too long"
    assert clock.now - lost_at <= LEASE + 2 * RENEW
    assert group["a"].shards() == set()  # its hold lapsed first: never two at once


async def test_a_graceful_stop_hands_every_shard_over_at_the_next_round() -> None:
    clock, store = FrozenClock(), FakeLeases()
    group = {"a": replica(store, clock, "a"), "b": replica(store, clock, "b")}
    await rounds(group, clock, 3)
    await group["a"].release_all()
    assert group["a"].shards() == set()
    await group["b"].step()
    assert group["b"].shards() == set(range(SHARDS))
    assert "foreseer-member-a" not in store.bodies


async def test_a_replica_cut_off_from_the_api_server_stops_acting_before_its_lease_expires(
) -> None:
    clock, store = FrozenClock(), FakeLeases()
    a = replica(store, clock, "a")
    await a.step()
    renewed = clock.now
    a.api.cut = True  # type: ignore[attr-defined]
    clock.now = renewed + LEASE * 0.79
    assert a.shards() == set(range(SHARDS))
    clock.now = renewed + LEASE * 0.8
    assert a.shards() == set()  # before any other replica could see the Lease as expired


@settings(max_examples=150, deadline=None)
@given(schedule=st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from(
    ["step", "step", "step", "cut", "heal", "stop"]), st.floats(0.0, 8.0)), max_size=60),
    shards=st.integers(1, 12))
async def test_whatever_the_crashes_and_partitions_no_shard_is_held_twice_and_none_is_left(
        schedule: list[tuple[str, str, float]], shards: int) -> None:
    clock, store = FrozenClock(), FakeLeases()
    group = {n: replica(store, clock, n, shards) for n in "abc"}
    for name, action, later in schedule:
        r = group[name]
        if action == "step":
            with contextlib.suppress(ClusterError):
                await r.step()
        elif action == "stop":
            if not r.api.cut:  # type: ignore[attr-defined]
                await r.release_all()
        else:
            r.api.cut = action == "cut"  # type: ignore[attr-defined]
        clock.now += later
        assert all(len(h) == 1 for h in owners(group).values()), owners(group)
    for r in group.values():
        r.api.cut = False  # type: ignore[attr-defined]
    await rounds(group, clock, int((LEASE + 2 * RENEW) / RENEW) + 1)
    assert set(owners(group)) == set(range(shards)), "a shard was left without an owner"


@pytest.fixture
def sharded(clock: FrozenClock, cluster: FakeCluster, source: FakeSource) -> Runtime:
    config = Settings(sharding=ShardingSettings(shards=2, identity="a", lease_seconds=LEASE,
                                                renew_seconds=RENEW))
    runtime = Runtime(settings=config, prometheus=source,  # type: ignore[arg-type]
                      cluster=cluster,  # type: ignore[arg-type]
                      fitter=Fitter(FittingSettings(), pool=inline_pool, fit=failing_fit),
                      clock=clock)
    runtime.sharder = Sharder(FakeLeases(), config.sharding, clock)
    return runtime


class CountingSource(FakeSource):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def current(self, query: str, now: float, *, tenant: str | None = None) -> Any:
        self.reads += 1
        return await super().current(query, now, tenant=tenant)


async def test_a_policy_of_a_shard_this_replica_does_not_hold_is_neither_read_nor_written(
        sharded: Runtime, clock: FrozenClock, cluster: FakeCluster) -> None:
    counting = CountingSource()
    sharded.prometheus = counting  # type: ignore[assignment]
    policy = body()
    assert sharded.sharder is not None
    await sharded.sharder.step()  # alone: holds both shards
    sharded.sharder.held_.pop(shard_of("shop", "web", 2))  # as if the shard moved away
    wait = await tick(sharded, policy)
    assert wait == RENEW
    assert counting.reads == 0 and cluster.status_writes == []
    assert ("shop", "web") not in sharded.memories


async def test_the_replica_holding_the_shard_decides_and_writes_as_without_sharding(
        sharded: Runtime, clock: FrozenClock, cluster: FakeCluster) -> None:
    assert sharded.sharder is not None
    await sharded.sharder.step()
    await run_ticks(sharded, clock, body(), 1, every=1.0)
    assert cluster.status_writes, "the owner wrote no status"
    assert cluster.replicas == 3  # 300 rps at 100 per replica
