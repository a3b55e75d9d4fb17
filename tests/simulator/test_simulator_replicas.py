from __future__ import annotations

import numpy as np

from foreseer.simulator.replicas import ReplicaPool


def test_a_new_replica_serves_only_after_its_startup_delay() -> None:
    pool = ReplicaPool(startup=120).start(0, 2)
    pool.scale(0, 5)
    assert (pool.replicas, pool.ready) == (5, 2)
    pool.advance(119)
    assert pool.ready == 2
    pool.advance(120)
    assert pool.ready == 5
    assert list(pool.ready_at(np.array([0.0, 119.0, 120.0]))) == [2, 2, 5]


def test_scale_down_removes_starting_replicas_first_and_at_once() -> None:
    pool = ReplicaPool(startup=120).start(0, 3)
    pool.scale(0, 6)
    pool.scale(60, 4)
    assert (pool.replicas, pool.ready) == (4, 3)
    pool.scale(90, 1)
    assert (pool.replicas, pool.ready) == (1, 1)
    pool.advance(500)
    assert pool.ready == 1
    assert list(pool.ready_at(np.array([89.0, 90.0]))) == [3, 1]


def test_paid_replicas_include_starting_ones_and_actions_count_changes() -> None:
    pool = ReplicaPool(startup=120).start(0, 1)
    pool.scale(0, 3)
    pool.scale(30, 3)
    pool.scale(60, 2)
    assert list(pool.replicas_at(np.array([0.0, 59.0, 60.0]))) == [3, 3, 2]
    assert pool.actions == 2
