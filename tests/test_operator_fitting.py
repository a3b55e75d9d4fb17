"""Model lifecycle helpers: the live forecast error, lead time, and when to refit."""

from __future__ import annotations

import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from foreseer.operator.fitting import Fitter, default_executor, fit_forecaster
from foreseer.operator.forecasting import LiveError, Recipe, horizon_seconds, refit_due, urgency
from foreseer.operator.leadtimes import LEAD_RELIST_SECONDS, LeadTime, readiness_seconds
from foreseer.operator.settings import FittingSettings
from foreseer.predictors.forecasts import Forecaster
from foreseer.predictors.series import Series
from harness.fakes import settled

DAY = 86400.0
RECIPE = Recipe(models=("naive", "seasonal_naive"), quantile=0.9, step=60.0, history=DAY,
                horizon=12)


def pod(uid: str, created: str, ready_at: str | None, status: str = "True") -> dict:
    conditions = [] if ready_at is None else [
        {"type": "Ready", "status": status, "lastTransitionTime": ready_at}]
    return {"metadata": {"uid": uid, "creationTimestamp": created},
            "status": {"conditions": conditions}}


def test_live_error_compares_the_forecast_with_the_naive_one_at_the_same_lead() -> None:
    error = LiveError()
    series = Series(0.0, 60.0, np.arange(20, dtype=float) * 10)  # load rises 10 per minute
    for t in range(5):
        # made at minute t for minute t+5: the perfect forecast vs "stays as it is"
        error.expect(target_time=(t + 5) * 60.0, forecast=(t + 5) * 10.0, naive=t * 10.0)
    error.score(series)
    assert error.mase() == 0.0
    assert not error.pending


def test_live_error_waits_for_the_actual_value_and_skips_missing_ones() -> None:
    error = LiveError()
    error.expect(target_time=600.0, forecast=1.0, naive=2.0)
    error.score(Series(0.0, 60.0, np.ones(5)))  # ends at 300s: not yet
    assert error.pending
    error.score(Series(0.0, 60.0, np.full(20, np.nan)))  # arrived, but missing
    assert not error.pending
    assert error.mase(minimum=1) is None


def test_an_unchanged_load_gives_no_evidence_for_a_perfect_forecast_and_any_error_is_worse(
) -> None:
    wrong, right = LiveError(), LiveError()
    for t in range(5):
        wrong.expect(target_time=t * 60.0, forecast=6.0, naive=5.0)
        right.expect(target_time=t * 60.0, forecast=5.0, naive=5.0)
    flat = Series(0.0, 60.0, np.full(5, 5.0))
    wrong.score(flat)
    right.score(flat)
    assert wrong.mase() == float("inf")
    assert right.mase() is None


def test_readiness_counts_only_ready_pods_from_creation() -> None:
    pods = [pod("a", "2026-01-01T00:00:00Z", "2026-01-01T00:00:42Z"),
            pod("b", "2026-01-01T00:00:00Z", "2026-01-01T00:00:10Z", status="False"),
            pod("c", "2026-01-01T00:00:00Z", None)]
    assert readiness_seconds(pods) == [42.0]


def test_auto_horizon_is_the_lead_time_plus_one_interval() -> None:
    lead = LeadTime()
    lead.observe([pod("a", "2026-01-01T00:00:00Z", "2026-01-01T00:01:30Z")], (1, 1), 0.0)
    lead.observe([pod("a", "2026-01-01T00:00:00Z", "2026-01-01T00:01:30Z")], (1, 1), 30.0)
    assert list(lead.samples) == [90.0]
    assert horizon_seconds("auto", 30.0, lead.seconds()) == 120.0
    assert horizon_seconds("5m", 30.0, lead.seconds()) == 300.0


def test_pods_are_listed_again_when_replicas_move_or_a_pod_is_not_ready_yet() -> None:
    lead = LeadTime()
    assert lead.due((2, 2), now=0.0)  # never looked
    lead.observe([pod("a", "2026-01-01T00:00:00Z", "2026-01-01T00:00:40Z")], (2, 2), 0.0)
    assert not lead.due((2, 2), now=30.0)  # nothing new to measure
    assert lead.due((3, 2), now=30.0)  # asked for one more
    lead.observe([pod("b", "2026-01-01T00:10:00Z", None)], (3, 3), 30.0)
    assert lead.due((3, 3), now=60.0)  # b is still becoming ready
    lead.observe([pod("b", "2026-01-01T00:10:00Z", "2026-01-01T00:10:50Z")], (3, 3), 60.0)
    assert not lead.due((3, 3), now=90.0)
    assert lead.due((3, 3), now=60.0 + LEAD_RELIST_SECONDS)  # a periodic look all the same
    assert list(lead.samples) == [40.0, 50.0]


def fit_or_die(series: Series, recipe: Recipe) -> tuple[Forecaster, float]:
    """A fit whose worker process dies when the series starts before 0 (as if OOM-killed)."""
    if series.start < 0:
        os._exit(1)
    return fit_forecaster(series, recipe)


def history(start: float = 0.0, n: int = 200) -> Series:
    return Series(start, 60.0, 100 + 10 * np.sin(np.arange(n) / 10))


async def test_a_dead_fitting_worker_is_replaced_and_fitting_goes_on() -> None:
    fitter = Fitter(FittingSettings(workers=1), fit=fit_or_die)
    try:
        fitter.submit(("ns", "p", "dies"), history(start=-60.0), RECIPE, time.time)
        await settled(fitter, ("ns", "p", "dies"))
        assert fitter.get(("ns", "p", "dies")) is None
        fitter.submit(("ns", "p", "lives"), history(), RECIPE, time.time)
        await settled(fitter, ("ns", "p", "lives"))
        assert fitter.get(("ns", "p", "lives")) is not None
    finally:
        fitter.shutdown()


def held_fitter(gate: threading.Event) -> Fitter:
    """A one-worker fitter whose fits wait for ``gate``, so the test sees the pool busy."""

    def held_fit(series: Series, recipe: Recipe) -> tuple[Forecaster, float]:
        gate.wait(timeout=30)
        return fit_forecaster(series, recipe)

    return Fitter(FittingSettings(workers=1), pool=lambda s: ThreadPoolExecutor(s.workers),
                  fit=held_fit)


async def test_fits_start_only_when_a_worker_is_nearly_free_and_first_fits_go_before_refits(
) -> None:
    gate = threading.Event()
    fitter = held_fitter(gate)
    try:
        a, b, c, d = (("ns", p, "load") for p in "abcd")
        assert fitter.submit(a, history(), RECIPE, time.time, first=True)
        assert fitter.submit(b, history(), RECIPE, time.time, first=True)  # one queued
        assert not fitter.submit(c, history(), RECIPE, time.time, first=True)  # asks again
        gate.set()
        await settled(fitter, a)
        await settled(fitter, b)
        # c still has no model: a refit of a must wait for it
        assert not fitter.submit(a, history(), RECIPE, time.time)
        assert fitter.submit(c, history(), RECIPE, time.time, first=True)
        assert fitter.submit(d, history(), RECIPE, time.time, first=True)
        await settled(fitter, c)
        await settled(fitter, d)
        assert fitter.submit(a, history(), RECIPE, time.time)
        await settled(fitter, a)
        assert all(fitter.get(key) is not None for key in (a, b, c, d))
    finally:
        fitter.shutdown()


async def test_after_a_cold_start_the_first_fit_of_a_rising_load_goes_before_a_flat_one(
) -> None:
    gate = threading.Event()
    fitter = held_fitter(gate)
    try:
        busy, flat, rising = (("ns", p, "load") for p in ("busy", "flat", "rising"))
        assert fitter.submit(busy, history(), RECIPE, time.time, first=True)
        assert fitter.submit(("ns", "queued", "load"), history(), RECIPE, time.time, first=True)
        assert not fitter.submit(flat, history(), RECIPE, time.time, first=True, urgency=0.0)
        assert not fitter.submit(rising, history(), RECIPE, time.time, first=True, urgency=0.5)
        gate.set()
        await settled(fitter, busy)
        await settled(fitter, ("ns", "queued", "load"))
        # The flat load asks first, but the rising one is waiting: it goes first.
        assert not fitter.submit(flat, history(), RECIPE, time.time, first=True, urgency=0.0)
        assert fitter.submit(rising, history(), RECIPE, time.time, first=True, urgency=0.5)
        assert fitter.submit(flat, history(), RECIPE, time.time, first=True, urgency=0.0)
    finally:
        fitter.shutdown()


def test_urgency_is_how_fast_the_load_rises_and_zero_when_flat_falling_or_unknown() -> None:
    rising = Series(0.0, 60.0, np.r_[np.full(30, 100.0), np.full(30, 150.0)])
    assert urgency(rising) == pytest.approx(0.5)
    assert urgency(Series(0.0, 60.0, np.full(60, 100.0))) == 0.0
    assert urgency(Series(0.0, 60.0, np.r_[np.full(30, 150.0), np.full(30, 100.0)])) == 0.0
    assert urgency(Series(0.0, 60.0, np.full(60, np.nan))) == 0.0
    assert urgency(Series(0.0, 60.0, np.full(10, 100.0))) == 0.0  # no window before


async def test_models_are_refitted_when_stale_or_changed_and_the_lru_stays_bounded() -> None:
    fitter = Fitter(FittingSettings(workers=1, max_models=2),
                    pool=lambda s: ThreadPoolExecutor(s.workers))
    try:
        key = ("ns", "p", "load")
        assert refit_due(None, RECIPE, now=0.0, retrain=3600, drift=False) == "no model yet"
        fitter.submit(key, history(), RECIPE, lambda: 1000.0)
        await settled(fitter, key)
        fitted = fitter.get(key)
        assert fitted is not None and fitted.points == 200
        assert refit_due(fitted, RECIPE, 1010.0, 3600, drift=False) is None
        assert refit_due(fitted, RECIPE, 1010.0, 3600, drift=True) is None  # too soon
        assert refit_due(fitted, RECIPE, 1300.0, 3600, drift=True) == \
            "live forecast error drifted"
        assert refit_due(fitted, RECIPE, 4600.0, 3600, drift=False) == \
            "retrain interval elapsed"
        other = Recipe(models=("naive",), quantile=0.9, step=60.0, history=DAY, horizon=12)
        assert refit_due(fitted, other, 1010.0, 3600, drift=False) == "the policy changed"

        for metric in ("a", "b"):
            fitter.submit(("ns", "q", metric), history(), RECIPE, lambda: 1000.0)
            await settled(fitter, ("ns", "q", metric))
        assert len(fitter) == 2 and fitter.get(key) is None  # the least recently used went first
        fitter.forget("ns", "q")
        assert len(fitter) == 0
    finally:
        fitter.shutdown()


def test_a_fitted_model_calibrates_only_the_quantile_its_policy_provisions_for() -> None:
    recipe = Recipe(models=("naive", "ewma"), quantile=0.95, step=60.0, history=DAY,
                    horizon=12)
    model, _ = fit_forecaster(history(n=600), recipe)

    calibrated = model.calibrated_  # type: ignore[attr-defined]
    assert calibrated.offsets_.levels == (0.95,)
    assert set(calibrated.ledger_.quantiles) == {0.95}
    upper = model.predict(12, (0.95,)).quantile(0.95)
    assert np.all(np.isfinite(upper))


def loaded_libraries() -> list[str]:
    return sorted(name for name in ("pandas", "sklearn") if sys.modules.get(name) is not None)


def test_a_fitting_worker_fits_boosted_trees_without_loading_pandas() -> None:
    executor = default_executor(FittingSettings(workers=1))
    try:
        recipe = Recipe(models=("boosting",), quantile=0.9, step=60.0, history=DAY,
                        horizon=12)
        model, _ = executor.submit(fit_forecaster, history(n=1440), recipe).result(timeout=300)
        loaded = executor.submit(loaded_libraries).result(timeout=60)
    finally:
        executor.shutdown()

    assert loaded == ["sklearn"]
    assert np.all(np.isfinite(model.predict(12, (0.9,)).quantile(0.9)))
