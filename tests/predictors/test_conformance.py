"""The shared conformance check every forecaster passes (like scikit-learn's check_estimator).

To add a forecaster, append a (name, factory) pair to FORECASTERS.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from foreseer.predictors.forecasts import Forecast, Forecaster
from foreseer.predictors.models import MODELS
from foreseer.predictors.selecting import AutoForecaster
from foreseer.predictors.series import Series

FORECASTERS: list[tuple[str, Callable[[], Forecaster]]] = [
    *MODELS.items(),
    ("auto", AutoForecaster),
]
"""Every forecaster under test: the registry's model families (and the AutoForecaster)."""

STEP = 300.0
DAY = 288
START = 1_700_006_400.0  # a midnight UTC, so calendar features line up with the shape


def series(values: np.ndarray) -> Series:
    return Series(START, STEP, np.asarray(values, dtype=np.float64))


def daily(days: float, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    n = int(days * DAY)
    t = np.arange(n)
    shape = 100 + 50 * np.sin(2 * np.pi * t / DAY)
    return shape + noise * np.random.default_rng(seed).standard_normal(n)


def next_day(h: int) -> np.ndarray:
    """The clean daily shape just after `daily(...)` of a whole number of days."""
    return 100 + 50 * np.sin(2 * np.pi * np.arange(h) / DAY)


def assert_sane(forecast: Forecast, horizon: int, levels: tuple[float, ...]) -> None:
    assert forecast.horizon == horizon
    assert np.all(np.isfinite(forecast.mean)) and np.all(forecast.mean >= 0)
    assert sorted(forecast.quantiles) == sorted(levels)
    stacked = np.vstack([forecast.quantile(q) for q in sorted(levels)])
    assert np.all(np.isfinite(stacked)) and np.all(stacked >= 0)
    assert np.all(np.diff(stacked, axis=0) >= 0), "quantiles cross"


pytestmark = pytest.mark.parametrize(
    "factory", [f for _, f in FORECASTERS], ids=[name for name, _ in FORECASTERS]
)


def test_fit_returns_the_forecaster_and_predict_gives_monotone_non_negative_quantiles(
    factory: Callable[[], Forecaster],
) -> None:
    model = factory()
    assert model.fit(series(daily(4, noise=5))) is model
    levels = (0.1, 0.5, 0.9)
    forecast = model.predict(24, levels)
    assert_sane(forecast, 24, levels)
    assert forecast.start == START + 4 * DAY * STEP
    assert forecast.step == STEP


def test_a_constant_load_is_forecast_as_that_constant(factory: Callable[[], Forecaster]) -> None:
    forecast = factory().fit(series(np.full(3 * DAY, 42.0))).predict(12, (0.5, 0.9))
    np.testing.assert_allclose(forecast.mean, 42.0, atol=0.5)
    np.testing.assert_allclose(forecast.quantile(0.9), 42.0, atol=0.5)


def test_a_linear_trend_keeps_rising(factory: Callable[[], Forecaster]) -> None:
    values = 10 + 0.1 * np.arange(2 * DAY)
    forecast = factory().fit(series(values)).predict(12)
    assert forecast.mean[-1] > values[-DAY], "forecast fell back below yesterday's level"
    assert abs(forecast.mean[0] - values[-1]) < 0.05 * values[-1]


def test_a_pure_daily_season_is_followed_by_the_seasonal_models(
    factory: Callable[[], Forecaster],
) -> None:
    model = factory().fit(series(daily(5)))
    horizon = 36
    forecast = model.predict(horizon)
    error = np.mean(np.abs(forecast.mean - next_day(horizon)))
    naive_error = np.mean(np.abs(daily(5)[-1] - next_day(horizon)))
    # Every model must at least match holding the last value; seasonal ones beat it.
    assert error <= naive_error + 1.0


def test_a_noisy_season_gives_a_q90_above_the_mean(factory: Callable[[], Forecaster]) -> None:
    forecast = factory().fit(series(daily(6, noise=8))).predict(12, (0.5, 0.9))
    assert np.all(forecast.quantile(0.9) >= forecast.mean - 1e-9)
    assert np.mean(forecast.quantile(0.9) - forecast.mean) > 1.0
    assert np.mean(np.abs(forecast.mean - next_day(12))) < 25


def test_gaps_are_tolerated_and_never_read_as_zero_load(factory: Callable[[], Forecaster]) -> None:
    values = daily(4, noise=2)
    values[100:160] = np.nan
    values[-20:-5] = np.nan
    forecast = factory().fit(series(values)).predict(12)
    assert_sane(forecast, 12, (0.5, 0.9))
    assert forecast.mean.min() > 20, "a gap was read as a drop in load"


@pytest.mark.parametrize("length", [1, 2, 5, 30])
def test_a_short_history_degrades_gracefully(
    factory: Callable[[], Forecaster], length: int
) -> None:
    values = 50 + np.arange(length, dtype=np.float64)
    model = factory().fit(series(values))
    forecast = model.predict(6, (0.5, 0.9))
    assert_sane(forecast, 6, (0.5, 0.9))
    assert abs(forecast.mean[0] - values[-1]) <= 10


def test_a_single_point_is_forecast_flat(factory: Callable[[], Forecaster]) -> None:
    forecast = factory().fit(series(np.array([7.0]))).predict(3, (0.5, 0.9))
    np.testing.assert_allclose(forecast.mean, 7.0)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.inf, "infinite"),
        (-np.inf, "infinite"),
        (-3.5, r"negative value\(s\), first -3.5 at index 10"),
    ],
)
def test_inf_or_negative_input_is_a_clear_value_error(
    factory: Callable[[], Forecaster], bad: float, message: str
) -> None:
    values = daily(2)
    values[10] = bad
    with pytest.raises(ValueError, match=message):
        factory().fit(series(values))


def test_an_all_missing_or_empty_history_is_a_clear_value_error(
    factory: Callable[[], Forecaster],
) -> None:
    with pytest.raises(ValueError, match="no observed values"):
        factory().fit(series(np.full(10, np.nan)))
    with pytest.raises(ValueError, match="empty"):
        factory().fit(series(np.empty(0)))


def test_bad_prediction_requests_are_value_errors(factory: Callable[[], Forecaster]) -> None:
    model = factory().fit(series(daily(2)))
    with pytest.raises(ValueError, match="horizon"):
        model.predict(0)
    with pytest.raises(ValueError, match="quantile"):
        model.predict(3, (1.5,))


def test_a_spike_yesterday_is_not_replayed_today(factory: Callable[[], Forecaster]) -> None:
    values = daily(4, noise=1)
    values[3 * DAY + 5] = 5000.0  # yesterday, 5 steps after this time of day
    forecast = factory().fit(series(values)).predict(12)
    assert forecast.mean.max() < 300
