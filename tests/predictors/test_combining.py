import numpy as np
import pytest
from forecaster_doubles import LastMean, Shifted, UpdatableLastMean, noisy_series

from foreseer.predictors.backtesting import BacktestSettings, backtest
from foreseer.predictors.combining import Combination, combine

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
