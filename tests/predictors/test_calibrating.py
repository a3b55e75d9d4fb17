import numpy as np
import pytest
from forecaster_doubles import LastMean, noisy_series

from foreseer.predictors.backtesting import Backtest, BacktestSettings
from foreseer.predictors.calibrating import Calibrated, CalibrationSettings, conformal_offsets
from foreseer.predictors.series import Series

SETTINGS = CalibrationSettings(backtest=BacktestSettings(horizon=12, origins=100, stride=5))


def unseen_coverage(model: Calibrated, series: Series, first: int, q: float) -> float:
    """Coverage of the q forecast from every origin after ``first``, each on unseen points."""
    hits = []
    for origin in range(first, len(series) - 12, 3):
        forecast = model.update(series.window(0, origin * series.step))
        upper = forecast.predict(12, (q,)).quantile(q)
        hits.append(series.values[origin : origin + 12] <= upper)
    return float(np.mean(hits))


def test_calibrated_q90_is_exceeded_about_ten_percent_of_the_time_on_unseen_data():
    series = noisy_series(3000, seed=1)
    model = Calibrated(LastMean(k=12), SETTINGS).fit(series.window(0, 1500 * 300))
    assert model.fallback_ is None
    assert unseen_coverage(model, series, 1500, 0.9) == pytest.approx(0.9, abs=0.03)


def test_calibration_follows_the_load_when_it_turns_noisier_after_the_fit():
    calm, rough = noisy_series(1500, seed=3, sigma=1.0), noisy_series(1500, seed=4, sigma=5.0)
    series = Series(0.0, 300.0, np.r_[calm.values, rough.values])
    model = Calibrated(LastMean(k=12), SETTINGS).fit(series.window(0, 1500 * 300))
    # walk through the change; by the second half of the rough part the offsets caught up
    unseen_coverage(model, series, 1500, 0.9)
    assert unseen_coverage(model, series, 2250, 0.9) == pytest.approx(0.9, abs=0.04)


def test_calibration_covers_levels_between_calibrated_ones_by_interpolation():
    series = noisy_series(3000, seed=2)
    for q, tolerance in ((0.5, 0.05), (0.85, 0.04)):
        model = Calibrated(LastMean(k=12), SETTINGS).fit(series.window(0, 1500 * 300))
        assert unseen_coverage(model, series, 1500, q) == pytest.approx(q, abs=tolerance)


def test_calibration_lifts_a_spreadless_q90_above_the_point_forecast():
    series = noisy_series(3000, seed=1)
    model = Calibrated(LastMean(k=12), SETTINGS).fit(series.window(0, 1500 * 300))
    raw = LastMean(k=12).fit(series.window(0, 1500 * 300)).predict(12, (0.9,)).quantile(0.9)
    calibrated = model.predict(12, (0.9,)).quantile(0.9)
    assert (calibrated > raw).all()


def test_offsets_grow_with_the_lead_time_when_errors_do():
    rng = np.random.default_rng(0)
    errors = rng.standard_normal((200, 6)) * np.arange(1, 7)
    result = Backtest(np.arange(200), errors, np.zeros((200, 6)), {0.9: np.zeros((200, 6))})
    offsets = conformal_offsets(result, (0.9,), spread=0.0).at(0.9, 6)
    np.testing.assert_allclose(offsets, 1.2816 * np.arange(1, 7), rtol=0.2)


def test_steps_past_the_calibrated_horizon_reuse_the_last_offset():
    result = Backtest(np.arange(8), np.ones((8, 2)), np.zeros((8, 2)), {0.9: np.zeros((8, 2))})
    offsets = conformal_offsets(result, (0.9,))
    np.testing.assert_allclose(offsets.at(0.9, 4), [1.0, 1.0, 1.0, 1.0])


def test_a_history_too_short_to_backtest_is_served_uncalibrated_and_says_so():
    model = Calibrated(LastMean(), SETTINGS).fit(noisy_series(30))
    assert "uncalibrated" in model.fallback_
    forecast = model.predict(3)
    np.testing.assert_allclose(forecast.quantile(0.9), forecast.mean)


def test_quantiles_stay_monotone_across_levels_after_calibration():
    model = Calibrated(LastMean(k=12), SETTINGS).fit(noisy_series(1500))
    forecast = model.predict(12, (0.1, 0.5, 0.9, 0.99))
    stacked = np.vstack([forecast.quantile(q) for q in (0.1, 0.5, 0.9, 0.99)])
    assert (np.diff(stacked, axis=0) >= 0).all()


def test_the_wrapped_prototype_is_never_fitted_itself():
    prototype = LastMean(k=12)
    Calibrated(prototype, SETTINGS).fit(noisy_series(1500))
    assert prototype.fits == 0


def test_the_offset_is_the_empirical_quantile_of_the_misses():
    errors = np.arange(1.0, 21.0)[:, None]
    result = Backtest(np.arange(20), errors, np.zeros((20, 1)), {0.9: np.zeros((20, 1))})
    # 0.9 * 20 = 18: the 18th smallest, the shift with the least pinball loss on them
    assert conformal_offsets(result, (0.9,)).at(0.9, 1)[0] == 18.0


def test_a_run_of_misses_moves_the_target_level_no_further_than_the_limit():
    calm, rough = noisy_series(1500, seed=3, sigma=1.0), noisy_series(600, seed=4, sigma=20.0)
    series = Series(0.0, 300.0, np.r_[calm.values, rough.values])
    model = Calibrated(LastMean(k=12), SETTINGS).fit(series.window(0, 1500 * 300))
    unseen_coverage(model, series, 1500, 0.9)
    assert model.shift_.max() == pytest.approx(SETTINGS.adapt_limit)
    assert np.abs(model.shift_).max() <= SETTINGS.adapt_limit
