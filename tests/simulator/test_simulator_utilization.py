"""The utilisation runs of the simulator: a capacity learned from a utilisation target, and a
release step that makes each replica serve less from mid-trace."""

from __future__ import annotations

import math

import numpy as np
from conftest import daily

from foreseer.simulator.comparing import Comparison, compare
from foreseer.simulator.policies import FORESEER_UTILIZATION, HPA_UTILIZATION
from foreseer.simulator.scenarios import Scenario
from foreseer.simulator.traces import Trace

STEP = 300.0
BOTH = (FORESEER_UTILIZATION, HPA_UTILIZATION)


def _trace() -> Trace:
    times, values = daily(4, STEP)
    return Trace("daily", times, values)


def test_a_thirty_percent_drop_is_detected_within_ten_intervals_and_never_before() -> None:
    run = compare(_trace(), Comparison(Scenario(capacity_drop=0.3), retrain=86400.0, only=BOTH))
    drop_at = run.workload.drop_at
    drifts = run.drifts[FORESEER_UTILIZATION]
    assert drifts and all(t >= drop_at for t in drifts)
    assert (drifts[0] - drop_at) / run.workload.interval <= 10
    assert HPA_UTILIZATION not in run.drifts  # the HPA learns nothing


def test_without_a_drop_no_drift_is_ever_reported() -> None:
    run = compare(_trace(), Comparison(Scenario(), retrain=86400.0, only=(FORESEER_UTILIZATION,)))
    assert math.isinf(run.workload.drop_at)
    assert run.drifts[FORESEER_UTILIZATION] == []


def test_under_provisioned_time_over_a_span_agrees_with_the_whole_run_score() -> None:
    run = compare(_trace(), Comparison(Scenario(capacity_drop=0.3), retrain=86400.0,
                                       only=(HPA_UTILIZATION,)))
    whole = run.underprov_time(HPA_UTILIZATION, -math.inf, math.inf)
    assert whole == run.scores[HPA_UTILIZATION].underprov_time
    halves = [run.underprov_time(HPA_UTILIZATION, -math.inf, run.workload.drop_at),
              run.underprov_time(HPA_UTILIZATION, run.workload.drop_at, math.inf)]
    assert None not in halves
    assert np.isclose(sum(h for h in halves if h is not None) / 2, whole, atol=0.01)
    assert run.underprov_time(HPA_UTILIZATION, 0.0, 1.0) is None  # no grid point in it
