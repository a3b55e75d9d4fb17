import numpy as np
import pytest
from forecaster_doubles import LastMean, Shifted, UpdatableLastMean, noisy_series

from foreseer.predictors.backtesting import BacktestSettings, backtest
from foreseer.predictors.combining import Combination, Stitched, combine, stitch

SETTINGS = BacktestSettings(horizon=4, origins=6, stride=5)


def test_a_combination_forecasts_the_mean_of_its_members():
    series = noisy_series(300)
    members = [Shifted(LastMean(k=10), -3.0), Shifted(LastMean(k=10), 5.0)]
    combined = Combination(members, "pair").fit(series).predict(3, (0.9,))
    alone = LastMean(k=10).fit(series).predict(3, (0.9,))
    np.testing.assert_allclose(combined.mean, alone.mean + 1.0)
    np.testing.assert_allclose(combined.quantile(0.9), alone.quantile(0.9) + 1.0)
    assert combined.model == "pair"


def test_a_combined_backtest_is_what_the_combination_would_have_forecast():
    series = noisy_series(300)
    factories = [lambda: LastMean(k=3), lambda: LastMean(k=30)]
    joint = combine([backtest(f, series, SETTINGS) for f in factories])
    direct = backtest(lambda: Combination([f() for f in factories]), series, SETTINGS)
    np.testing.assert_allclose(joint.mean, direct.mean)
    np.testing.assert_allclose(joint.quantile(0.9), direct.quantile(0.9))


def test_a_combined_backtest_carries_the_members_last_models_to_move_on():
    series = noisy_series(300)
    results = [backtest(UpdatableLastMean, series, SETTINGS) for _ in range(2)]
    last = combine(results).last
    assert isinstance(last, Combination)
    assert last.update(series).predict(1).start == series.end


def test_backtests_over_different_origins_cannot_be_combined():
    series = noisy_series(300)
    other = BacktestSettings(horizon=4, origins=6, stride=7)
    with pytest.raises(ValueError, match="share their origins"):
        combine([backtest(LastMean, series, SETTINGS), backtest(LastMean, series, other)])


def test_a_combination_of_nothing_is_a_clear_error():
    with pytest.raises(ValueError, match="at least one member"):
        Combination([])


def test_a_stitched_forecaster_takes_each_step_from_its_chosen_member():
    series = noisy_series(300)
    members = {"low": Shifted(LastMean(k=10), -3.0), "high": Shifted(LastMean(k=10), 5.0)}
    forecast = Stitched(members, ["low", "high"], "s").fit(series).predict(4, (0.9,))
    level = LastMean(k=10).fit(series).predict(1).mean[0]
    np.testing.assert_allclose(forecast.mean, level + np.array([-3.0, 5.0, 5.0, 5.0]))


def test_a_stitched_backtest_is_what_the_stitched_forecaster_would_have_forecast():
    series = noisy_series(300)
    factories = {"short": lambda: LastMean(k=3), "long": lambda: LastMean(k=30)}
    choice = ["short", "short", "long", "long"]
    joint = stitch({n: backtest(f, series, SETTINGS) for n, f in factories.items()}, choice)
    direct = backtest(
        lambda: Stitched({n: f() for n, f in factories.items()}, choice), series, SETTINGS
    )
    np.testing.assert_allclose(joint.mean, direct.mean)
    np.testing.assert_allclose(joint.quantile(0.9), direct.quantile(0.9))


def test_a_step_without_a_member_is_a_clear_error():
    with pytest.raises(ValueError, match="missing"):
        Stitched({"a": LastMean()}, ["a", "b"])
