from __future__ import annotations

import numpy as np
from conftest import START, daily

from foreseer.simulator.policies import (
    FORESEER_AUTO,
    HPA,
    bounds_of,
    simulation_spec,
    standard_policies,
)
from foreseer.simulator.scenarios import Scenario, resolve
from foreseer.simulator.simulating import ORACLE, Policy, Run, Tick, simulate
from foreseer.simulator.traces import Trace

DAY_STEP = 300.0


class Recording:
    """Wraps a policy and remembers every replica count it set, by tick time."""

    def __init__(self, inner: Policy) -> None:
        self.inner, self.label, self.band = inner, inner.label, inner.band
        self.decisions: dict[float, int] = {}

    def decide(self, tick: Tick) -> int:
        replicas = self.inner.decide(tick)
        self.decisions[tick.now] = replicas
        return replicas


def _run(trace: Trace, scenario: Scenario | None = None) -> tuple[dict[str, Recording], Run]:
    workload = resolve(trace, scenario or Scenario())
    spec = simulation_spec(workload)
    policies = [Recording(p) for p in standard_policies(spec, workload, retrain=86400.0)]
    run = simulate(workload, policies, bounds_of(spec))
    return {p.label: p for p in policies}, run


def test_no_policy_sees_the_future() -> None:
    times, values = daily(2.5, DAY_STEP)
    cut = START + 2 * 86400
    changed = np.where(times >= cut, values * 3, values)
    # Unscaled: scaling by the p99 of the whole trace would itself carry the future.
    fixed = Scenario(p99_replicas=None, capacity=10.0)
    before, _ = _run(Trace("a", times, values), fixed)
    after, _ = _run(Trace("b", times, changed), fixed)
    # The load changes from the point at `cut` on, so the interpolated load differs from
    # one step before it: every decision up to then must be the same.
    seen = cut - DAY_STEP
    for label, policy in before.items():
        early = {t: r for t, r in policy.decisions.items() if t <= seen}
        assert early == {t: r for t, r in after[label].decisions.items() if t <= seen}, label
        assert early != policy.decisions


def test_a_replay_is_deterministic() -> None:
    times, values = daily(1.5, DAY_STEP, seed=3)
    first, run_a = _run(Trace("a", times, values))
    second, run_b = _run(Trace("a", times, values))
    assert {k: p.decisions for k, p in first.items()} == {k: p.decisions for k, p in second.items()}
    assert run_a.scores == run_b.scores


def test_the_hpa_scales_up_after_a_step_and_capacity_follows_a_startup_later() -> None:
    times = START + DAY_STEP * np.arange(200)
    values = np.where(np.arange(200) < 100, 10.0, 30.0)
    policies, run = _run(Trace("step", times, values))
    workload = run.workload
    hpa = policies[HPA].decisions
    # The decision at t99 sees the load 30s earlier, before the ramp to t100 begins.
    t99, t100 = float(times[99]), float(times[100])
    assert hpa[t99] == hpa[t99 - workload.interval]
    assert hpa[t100] > hpa[t99]
    ready = run.ready[HPA]
    index = int(np.searchsorted(run.grid, t100 + workload.startup))
    assert ready[index - 1] < ready[index]
    assert run.scores[HPA].underprov_time > 0
    assert run.scores[HPA].recovery_seconds is not None


def test_the_oracle_is_never_under_provisioned_and_costs_least() -> None:
    times, values = daily(1.5, DAY_STEP, seed=1)
    _, run = _run(Trace("d", times, values))
    oracle = run.scores[ORACLE]
    assert oracle.underprov_time == 0.0
    assert all(s.replica_hours >= oracle.replica_hours for s in run.scores.values())


def test_foreseer_auto_publishes_its_forecast_band_once_it_has_history() -> None:
    times, values = daily(2.5, DAY_STEP, seed=2)
    _, run = _run(Trace("d", times, values))
    band = run.bands[FORESEER_AUTO]
    assert band.times and len(band.times) == len(band.low) == len(band.high)
    assert all(lo <= hi for lo, hi in zip(band.low, band.high, strict=True))
    assert set(run.scores) >= {FORESEER_AUTO, HPA, ORACLE}
