from __future__ import annotations

import numpy as np
import pytest

from foreseer.simulator.scoring import oracle_replicas, score, step_changes


def test_the_oracle_starts_replicas_one_startup_early_and_never_under_provisions() -> None:
    load = np.array([1, 1, 1, 1, 5, 5, 1, 1], dtype=float)
    ready, paid = oracle_replicas(load, capacity=1.0, startup=120, grid_step=60,
                                  min_replicas=1, max_replicas=10)
    assert list(ready) == [1, 1, 1, 1, 5, 5, 1, 1]
    assert list(paid) == [1, 1, 5, 5, 5, 5, 1, 1]
    assert np.all(ready >= load)


def test_under_provisioned_time_and_unserved_load_measure_the_shortfall() -> None:
    load = np.array([1.0, 3.0, 3.0, 1.0])
    ready = np.array([2.0, 2.0, 3.0, 3.0])
    result = score(load, ready, ready, actions=2, capacity=1.0, grid_step=60,
                   oracle_hours=0.1, events=[])
    assert result.underprov_time == pytest.approx(0.25)
    assert result.unserved_load == pytest.approx(1.0 / 8.0)
    assert result.replica_hours == pytest.approx(10 * 60 / 3600)
    assert result.replica_hours_vs_oracle == pytest.approx(10 * 60 / 3600 / 0.1)
    assert result.recovery_seconds is None


def test_recovery_is_the_time_from_a_step_up_until_capacity_reaches_the_new_level() -> None:
    load = np.r_[np.full(120, 10.0), np.full(120, 30.0)]
    events = step_changes(load, grid_step=60, capacity=1.0)
    assert [i for i, _ in events] == [120]
    ready = np.r_[np.full(125, 10.0), np.full(115, 30.0)]
    result = score(load, ready, ready, 1, 1.0, 60, 1.0, events)
    assert result.recovery_seconds == pytest.approx(5 * 60)
