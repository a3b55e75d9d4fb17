"""The gradient-boosted lag model: direct horizons, learned shape, quantiles from its trees."""

from __future__ import annotations

import numpy as np

from foreseer.predictors.boosting import Boosting, seasonal_lags
from foreseer.predictors.series import Series


def daily_load(days: int, step: float, noise: float, seed: int = 0) -> Series:
    per_day = round(86400 / step)
    t = np.arange(days * per_day)
    rng = np.random.default_rng(seed)
    values = 200 + 80 * np.sin(2 * np.pi * t / per_day) + noise * rng.standard_normal(t.size)
    return Series(1_700_006_400.0, step, values)


def test_one_minute_steps_are_trained_an_hour_ahead_directly() -> None:
    model = Boosting().fit(daily_load(3, 60.0, noise=5))
    assert model.horizon_ == 60
    assert Boosting().fit(daily_load(6, 300.0, noise=5)).horizon_ == 12


def test_it_follows_a_noisy_daily_shape_better_than_the_last_value() -> None:
    history = daily_load(8, 300.0, noise=10)
    model = Boosting().fit(history)
    forecast = model.predict(12, (0.5, 0.9))
    truth = 200 + 80 * np.sin(2 * np.pi * np.arange(12) / 288)
    error = np.mean(np.abs(forecast.mean - truth))
    naive_error = np.mean(np.abs(history.values[-1] - truth))
    assert error < naive_error
    assert error < 10
    assert np.all(forecast.quantile(0.9) > forecast.mean)


def test_a_quantile_it_did_not_train_comes_from_its_residual_spread() -> None:
    model = Boosting(quantiles=(0.9,)).fit(daily_load(6, 300.0, noise=10))
    forecast = model.predict(12, (0.1, 0.5, 0.9))
    assert sorted(model.regressors_) == [0.5, 0.9]
    assert np.all(forecast.quantile(0.1) < forecast.quantile(0.5))
    assert np.all(forecast.quantile(0.5) < forecast.quantile(0.9))


def test_beyond_the_trained_horizon_the_spread_keeps_widening() -> None:
    model = Boosting().fit(daily_load(6, 300.0, noise=10))
    forecast = model.predict(48, (0.9,))
    band = forecast.quantile(0.9) - forecast.mean
    assert forecast.horizon == 48
    assert band[47] > band[11]


def test_the_hour_and_the_day_are_seasonal_lags_even_when_not_detected() -> None:
    assert seasonal_lags((), 300.0, 4000) == (12, 288)
    assert seasonal_lags((288, 2016), 300.0, 8000) == (288, 2016, 12)
    assert seasonal_lags((), 300.0, 400) == (12,)
    assert seasonal_lags((), 420.0, 4000) == ()
