import numpy as np
import pytest
from forecaster_doubles import LastMean, UpdatableLastMean, noisy_series, random_walk

from foreseer.predictors.backtesting import BacktestSettings
from foreseer.predictors.calibrating import CalibrationSettings
from foreseer.predictors.forecasts import Forecaster
from foreseer.predictors.selecting import AutoForecaster, SelectionSettings
from foreseer.predictors.series import Series

CANDIDATES = {"naive": LastMean, "mean48": lambda: LastMean(k=48)}


def auto(candidates=CANDIDATES, **kwargs) -> AutoForecaster:
    return AutoForecaster(candidates, **kwargs)


def test_an_auto_forecaster_is_itself_a_forecaster():
    model = auto().fit(noisy_series(2000))
    assert isinstance(model, Forecaster)
    forecast = model.predict(12, (0.5, 0.9))
    assert forecast.horizon == 12
    assert forecast.start == noisy_series(2000).end


def test_noise_around_a_level_picks_the_averaging_model():
    model = auto().fit(noisy_series(2000))
    assert model.selected_ == "mean48"
    assert model.predict(3).model == "mean48"


def test_a_random_walk_picks_the_last_value():
    assert auto().fit(random_walk(2000)).selected_ == "naive"


def test_scores_are_kept_per_horizon_step_for_every_candidate():
    model = auto().fit(noisy_series(2000))
    assert set(model.scores_) == {"naive", "mean48"}
    for scores in model.scores_.values():
        for metric in (scores.mase, scores.smape, scores.pinball, scores.coverage):
            assert metric.shape == (12,)
            assert np.isfinite(metric).all()
    assert model.scores_["mean48"].mase.mean() < model.scores_["naive"].mase.mean()


def test_the_winner_is_the_lowest_pinball_at_the_requested_quantile():
    model = auto(quantile=0.75).fit(random_walk(2000, seed=3))
    pinball = {name: s.pinball.mean() for name, s in model.scores_.items()}
    assert model.selected_ == min(pinball, key=pinball.get)
    assert all(s.q == 0.75 for s in model.scores_.values())


def test_the_served_q90_is_calibrated_not_the_winners_raw_spreadless_one():
    model = auto().fit(noisy_series(2000))
    forecast = model.predict(12, (0.9,))
    assert (forecast.quantile(0.9) > forecast.mean).all()
    assert model.calibrated_.offsets_.samples >= 4


def test_the_default_is_served_unless_another_candidate_clearly_beats_it():
    # On noise around a level the 48-point mean beats the last value by far, a lag-2 value
    # by almost nothing: only a clear margin displaces the default.
    candidates = {**CANDIDATES, "lag2": lambda: LastMean(k=1, skip=1)}
    series = noisy_series(2000)
    assert (
        auto(candidates, settings=SelectionSettings(default="naive")).fit(series).selected_
        == "mean48"
    )
    model = auto(candidates, settings=SelectionSettings(default="lag2")).fit(series)
    assert model.selected_ == "mean48"
    close = auto(candidates, settings=SelectionSettings(default="naive", margin=0.99)).fit(series)
    assert close.selected_ == "naive"
    assert close.scores_["mean48"].pinball.mean() < close.scores_["naive"].pinball.mean()


def test_a_short_history_falls_back_to_the_simple_model_and_says_so():
    model = auto().fit(noisy_series(40))
    assert model.selected_ == "naive"
    assert "without selection" in model.fallback_
    assert model.scores_ == {}
    assert model.predict(5).horizon == 5


def test_a_winner_that_fell_back_at_the_oldest_origin_is_refitted_on_the_whole_history():
    # At the backtest's oldest origin 600 points leave 24, too few for boosted trees (96),
    # which answer with EWMA there; moving that model on would serve EWMA as "boosting".
    model = AutoForecaster(["boosting"]).fit(noisy_series(600))
    assert model.calibrated_.model_.fallback_ is None
    assert model.predict(12).model == "boosting"


def test_a_winner_that_fell_back_even_on_the_whole_history_names_the_model_answering():
    settings = SelectionSettings(window=80 * 300.0)
    model = AutoForecaster(["boosting"], settings=settings).fit(noisy_series(80))
    assert model.selected_ == "boosting"
    assert model.predict(3).model == "boosting (fell back to ewma)"


def test_a_single_point_still_forecasts():
    model = auto().fit(Series(0.0, 60.0, np.array([7.0])))
    np.testing.assert_allclose(model.predict(2).mean, [7.0, 7.0])


def test_a_candidate_that_fails_everywhere_is_rejected_with_its_reason():
    candidates = {"picky": lambda: LastMean(fail_below=10**6), **CANDIDATES}
    model = auto(candidates).fit(noisy_series(2000))
    assert "needs 1000000 points" in model.rejected_["picky"]
    assert "picky" not in model.scores_


@pytest.mark.parametrize(("bad", "message"), [(np.inf, "infinite"), (-1.0, "negative")])
def test_bad_input_gives_a_clear_value_error(bad, message):
    values = noisy_series(200).values.copy()
    values[50] = bad
    with pytest.raises(ValueError, match=message):
        auto().fit(Series(0.0, 300.0, values))


def test_an_unknown_model_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model"):
        AutoForecaster(["no-such-model"]).fit(noisy_series(100))


def test_the_fit_uses_only_the_recent_window():
    series = Series(0.0, 300.0, np.r_[np.full(5000, 1000.0), np.full(500, 10.0)])
    settings = SelectionSettings(
        window=400 * 300.0,
        calibration=CalibrationSettings(backtest=BacktestSettings(horizon=6, origins=8)),
    )
    model = auto(settings=settings).fit(series)
    np.testing.assert_allclose(model.predict(1, (0.5,)).mean, [10.0])


def test_update_moves_the_origin_but_keeps_the_choice():
    candidates = {"naive": UpdatableLastMean, "mean48": lambda: UpdatableLastMean(k=48)}
    series = noisy_series(2100)
    model = auto(candidates).fit(series.window(0, 2000 * 300.0))
    model.update(series)
    assert model.predict(3).start == series.end
    assert model.selected_ == "mean48"
    assert model.calibrated_.ledger_.times[-1] == 2000 * 300.0


def test_a_short_plateau_repeating_every_240_steps_is_forecast_not_flattened():
    # Seven cycles of a 30-step plateau every 240 steps, ending 40 steps before the next one.
    # The backtest's oldest origins see 4.4 cycles, where period detection once missed the
    # season, so every candidate forgot it and the winner forecast a flat line.
    t = np.arange(7 * 240) + 200
    load = np.where(t % 240 < 30, 400.0, 100.0)
    model = AutoForecaster(horizon=60).fit(Series(0.0, 5.0, load))
    mean = model.predict(60, (0.5, 0.9)).mean
    np.testing.assert_allclose(mean[:40], 100.0, atol=20.0)
    np.testing.assert_allclose(mean[40:60], 400.0, atol=40.0)
