import numpy as np
import pytest
from forecaster_doubles import LastMean, UpdatableLastMean

from foreseer.predictors.backtesting import BacktestSettings, backtest
from foreseer.predictors.series import Series


def line(n: int) -> Series:
    return Series(0.0, 60.0, np.arange(n, dtype=np.float64))


def test_the_latest_origin_leaves_exactly_one_horizon_of_actuals():
    settings = BacktestSettings(horizon=5, origins=3, stride=10, min_history=1)
    result = backtest(LastMean, line(100), settings)
    np.testing.assert_array_equal(result.origins, [75, 85, 95])
    np.testing.assert_array_equal(result.actual[-1], [95, 96, 97, 98, 99])


def test_residuals_are_what_happened_minus_the_forecast_per_step():
    # naive on a unit-slope line misses by exactly the lead time
    result = backtest(LastMean, line(50), BacktestSettings(horizon=4, origins=5, min_history=1))
    np.testing.assert_allclose(result.residuals(), np.tile([1.0, 2.0, 3.0, 4.0], (5, 1)))
    np.testing.assert_allclose(result.errors(0.9), result.residuals())


def test_no_fit_ever_sees_the_future():
    settings = BacktestSettings(horizon=3, origins=4, stride=2, min_history=1)
    result = backtest(LastMean, line(30), settings)
    np.testing.assert_allclose(result.mean[:, 0], result.origins - 1)


def test_a_fit_window_bounds_the_history_each_origin_sees():
    settings = BacktestSettings(horizon=1, origins=2, window=4, min_history=4)
    result = backtest(lambda: LastMean(k=100), line(20), settings)
    # the mean of the 4 points before origin 19 is 16.5
    assert result.mean[-1, 0] == pytest.approx(16.5)


def test_origins_without_enough_observed_history_are_skipped():
    values = np.r_[np.full(40, np.nan), np.ones(20)]
    settings = BacktestSettings(horizon=2, origins=50, stride=1, min_history=10)
    result = backtest(LastMean, Series(0.0, 60.0, values), settings)
    assert result.origins.min() == 50
    assert result.origins.max() == 58


def test_a_model_failing_at_some_origins_leaves_nan_rows_and_says_why():
    settings = BacktestSettings(horizon=2, origins=10, stride=1, min_history=1)
    result = backtest(lambda: LastMean(fail_below=15), line(22), settings)
    failed = np.isnan(result.mean).all(axis=1)
    np.testing.assert_array_equal(failed, result.origins < 15)
    assert len(result.failures) == failed.sum()
    assert "needs 15 points" in result.failures[0]


def test_an_updatable_model_is_fitted_once_then_moved_forward():
    models: list[UpdatableLastMean] = []

    def factory() -> UpdatableLastMean:
        models.append(UpdatableLastMean())
        return models[-1]

    settings = BacktestSettings(horizon=2, origins=6, stride=1, min_history=1)
    result = backtest(factory, line(40), settings)
    assert len(models) == 1
    assert models[0].updates == 5
    np.testing.assert_allclose(result.mean[:, 0], result.origins - 1)


def test_an_updatable_model_is_refitted_every_refit_every_origins():
    models: list[UpdatableLastMean] = []

    def factory() -> UpdatableLastMean:
        models.append(UpdatableLastMean())
        return models[-1]

    settings = BacktestSettings(horizon=2, origins=6, stride=1, min_history=1, refit_every=4)
    backtest(factory, line(40), settings)
    assert [m.updates for m in models] == [3, 1]


@pytest.mark.parametrize(
    ("field", "value"),
    [("horizon", 0), ("origins", 0), ("stride", 0), ("window", 2), ("refit_every", 0)],
)
def test_settings_that_cannot_work_are_rejected_with_a_clear_error(field, value):
    with pytest.raises(ValueError, match=field):
        BacktestSettings(**{field: value})
