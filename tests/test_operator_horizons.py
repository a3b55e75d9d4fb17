"""Windows in time, horizons from the policy: what the operator's fit sees and how far ahead
it backtests and calibrates."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from test_operator_cycle import FakeCluster, body, inline_pool, run_ticks

from foreseer.operator.fitting import Fitter, fit_forecaster
from foreseer.operator.forecasting import Recipe, backtest_steps
from foreseer.operator.runtime import Runtime
from foreseer.operator.settings import FittingSettings, Settings
from foreseer.predictors.forecasts import Forecaster
from foreseer.predictors.series import Series
from harness.fakes import FakeSource, FrozenClock, settled

DAY = 86400.0
KEY = ("shop", "web", "rps")


def daily(step: float, days: float, seed: int = 0) -> Series:
    t = np.arange(int(days * DAY / step)) * step
    noise = np.random.default_rng(seed).normal(0, 5, t.size)
    return Series(1_700_006_400.0, step, 100 + 40 * np.sin(2 * np.pi * t / DAY) + noise)


def test_a_fit_on_seven_days_at_one_minute_finds_the_daily_season() -> None:
    # The window once held 4032 points whatever the step: 2.8 days at 1 minute, too few
    # cycles for Holt-Winters, which then reported no season at all.
    recipe = Recipe(models=("holt_winters",), quantile=0.9, step=60.0, history=7 * DAY,
                    horizon=15)
    model, _ = fit_forecaster(daily(60.0, 7), recipe)
    assert model.calibrated_.model_.period_ == 1440  # type: ignore[attr-defined]


def test_the_fit_sees_the_recipes_history_in_time_not_a_count_of_points() -> None:
    recipe = Recipe(models=("naive",), quantile=0.9, step=60.0, history=2 * DAY, horizon=5)
    model, _ = fit_forecaster(daily(60.0, 7), recipe)
    assert model.calibrated_.model_.history_.raw.size == 2 * 1440  # type: ignore[attr-defined]


def test_a_thirty_minute_horizon_at_one_minute_backtests_and_calibrates_thirty_steps() -> None:
    recipe = Recipe(models=("naive", "seasonal_naive"), quantile=0.9, step=60.0,
                    history=3 * DAY, horizon=backtest_steps(1800.0, 60.0))
    model, _ = fit_forecaster(daily(60.0, 3), recipe)
    assert recipe.horizon == 30
    assert {scores.mase.size for scores in model.scores_.values()} == {30}  # type: ignore[attr-defined]
    assert model.calibrated_.offsets_.values.shape[1] == 30  # type: ignore[attr-defined]


@given(horizon=st.floats(1.0, 3 * DAY), step=st.sampled_from([15.0, 60.0, 300.0, 1800.0]))
def test_the_backtest_covers_the_horizon_and_at_most_twice_it(horizon: float,
                                                               step: float) -> None:
    covered = backtest_steps(horizon, step) * step
    assert covered >= horizon
    assert covered < max(2 * horizon, 60.0) + step


@given(st.lists(st.floats(0.0, 6 * 3600.0), min_size=2, max_size=2))
def test_a_longer_horizon_never_backtests_fewer_steps(horizons: list[float]) -> None:
    short, long = sorted(horizons)
    assert backtest_steps(short, 60.0) <= backtest_steps(long, 60.0)


class RecordingFit:
    """The operator's own fit, remembering the recipe of every fit it was asked for."""

    def __init__(self) -> None:
        self.recipes: list[Recipe] = []

    def __call__(self, series: Series, recipe: Recipe) -> tuple[Forecaster, float]:
        self.recipes.append(recipe)
        return fit_forecaster(series, recipe)


def runtime_with(fit: RecordingFit, cluster: FakeCluster, source: FakeSource,
                 clock: FrozenClock) -> Runtime:
    fitter = Fitter(FittingSettings(), pool=inline_pool, fit=fit)
    return Runtime(settings=Settings(), prometheus=source,  # type: ignore[arg-type]
                   cluster=cluster, fitter=fitter, clock=clock)  # type: ignore[arg-type]


FORECAST = {"step": "1m", "history": "1d", "models": ["naive", "seasonal_naive"]}


async def test_the_handler_fits_at_the_policys_horizon_and_history() -> None:
    fit, clock, cluster, source = RecordingFit(), FrozenClock(), FakeCluster(), FakeSource()
    source.history_values = daily(60.0, 1).values
    runtime = runtime_with(fit, cluster, source, clock)
    try:
        await run_ticks(runtime, clock, body(forecast={**FORECAST, "horizon": "30m"}), 1)
        await settled(runtime.fitter, KEY)
        fitted = runtime.fitter.get(KEY)
    finally:
        runtime.fitter.shutdown()
    assert [(r.horizon, r.history) for r in fit.recipes] == [(30, DAY)]
    assert fitted is not None
    assert fitted.model.calibrated_.offsets_.values.shape[1] == 30  # type: ignore[attr-defined]


class JitteringPods(FakeCluster):
    """A target whose every listing shows a new pod, ready after a lead time that jitters."""

    def __init__(self, leads: list[float]) -> None:
        super().__init__()
        self.leads = leads
        self.listed = 0

    async def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        lead = self.leads[self.listed % len(self.leads)]
        self.listed += 1
        created = 1_800_000_000.0 + 1000.0 * self.listed

        def stamp(t: float) -> str:
            return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

        return [{"metadata": {"uid": f"pod-{self.listed}", "creationTimestamp": stamp(created)},
                 "status": {"conditions": [{"type": "Ready", "status": "True",
                                            "lastTransitionTime": stamp(created + lead)}]}}]


async def test_a_jittering_auto_lead_time_keeps_the_recipe_and_the_model() -> None:
    leads = [41.0, 47.0, 52.0, 44.0, 58.0, 49.0]
    fit, clock, source = RecordingFit(), FrozenClock(), FakeSource()
    cluster = JitteringPods(leads)
    source.history_values = daily(60.0, 1).values
    runtime = runtime_with(fit, cluster, source, clock)
    horizons = set()
    try:
        for _ in leads:
            # Pods are listed again after five minutes; each listing moves the lead time.
            await run_ticks(runtime, clock, body(forecast={**FORECAST, "horizon": "auto"}), 1,
                            every=301.0)
            await settled(runtime.fitter, KEY)
            horizons.add(runtime.memory("shop", "web").lead.seconds())
    finally:
        runtime.fitter.shutdown()
    assert len(horizons) == len(leads)  # the lead time moved at every listing
    assert len(fit.recipes) == 1, [r.horizon for r in fit.recipes]
    assert fit.recipes[0].horizon == 2  # 71-88 s ahead (lead + the 30 s interval): 2 minutes
    assert math.isclose(fit.recipes[0].step, 60.0)
