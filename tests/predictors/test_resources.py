import math

import numpy as np
import pytest

from foreseer.predictors.resources import LearnedCapacity, replicas_for


def test_direct_form_rounds_the_load_up_to_whole_replicas():
    assert replicas_for(101.0, 10.0) == 11
    assert replicas_for(0.0, 10.0) == 0


def test_direct_form_does_not_add_a_replica_for_floating_point_dust():
    assert replicas_for(0.1 * 3 * 100, 10.0) == 3
    assert replicas_for(70.0, 7.0) == 10


def test_a_missing_load_gives_no_replica_count_never_zero():
    assert replicas_for(math.nan, 10.0) is None


@pytest.mark.parametrize(
    ("load", "target", "message"),
    [(-1.0, 10.0, "negative"), (math.inf, 10.0, "infinite"), (5.0, 0.0, "target_per_replica")],
)
def test_direct_form_rejects_impossible_input_clearly(load, target, message):
    with pytest.raises(ValueError, match=message):
        replicas_for(load, target)


def history(n=600, seed=0, outliers=0):
    """Replicas each serve load at 100 units per full CPU, plus 5% idle utilisation."""
    rng = np.random.default_rng(seed)
    ready = rng.integers(2, 10, n).astype(float)
    load = ready * rng.uniform(10, 80, n)
    utilisation = 0.05 + load / ready / 100 + rng.normal(0, 0.02, n)
    utilisation[:outliers] = 1.0
    return load, ready, utilisation


def test_learned_capacity_recovers_what_a_replica_serves_at_the_target():
    model = LearnedCapacity().fit(*history())
    assert model.fallback_ is None
    assert model.per_replica(0.7) == pytest.approx(65.0, rel=0.03)
    assert model.replicas(650.0, 0.7) == pytest.approx(10, abs=1)
    assert model.confidence_ > 0.8


def test_learned_capacity_is_not_dragged_by_outliers():
    model = LearnedCapacity().fit(*history(outliers=40))
    assert model.per_replica(0.7) == pytest.approx(65.0, rel=0.05)


def test_rows_with_missing_values_or_no_ready_replica_are_skipped():
    load, ready, utilisation = history()
    load[:50] = np.nan
    ready[50:100] = 0
    utilisation[100:150] = np.nan
    model = LearnedCapacity().fit(load, ready, utilisation)
    assert model.samples_ == 450
    assert model.per_replica(0.7) == pytest.approx(65.0, rel=0.03)


def test_unrelated_utilisation_gives_low_confidence():
    rng = np.random.default_rng(1)
    load, ready, _ = history()
    model = LearnedCapacity().fit(load, ready, rng.uniform(0.2, 0.9, load.size))
    assert model.confidence_ < 0.2


def test_too_little_history_says_to_use_the_direct_form():
    model = LearnedCapacity().fit(*(a[:5] for a in history()))
    assert model.confidence_ == 0.0
    assert "direct form" in model.fallback_
    with pytest.raises(ValueError, match="no learned capacity"):
        model.per_replica(0.7)


def test_a_constant_load_per_replica_cannot_separate_capacity():
    _, ready, utilisation = history()
    model = LearnedCapacity().fit(ready * 20.0, ready, utilisation)
    assert "never varied" in model.fallback_


def test_mismatched_or_broken_arrays_are_rejected_clearly():
    with pytest.raises(ValueError, match="same length"):
        LearnedCapacity().fit([1.0, 2.0], [1.0], [0.5, 0.5])
    with pytest.raises(ValueError, match="infinities"):
        LearnedCapacity().fit([np.inf], [1.0], [0.5])
