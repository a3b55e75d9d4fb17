import numpy as np
import pytest

from foreseer.predictors.scores import (
    Scores,
    coverage,
    mae,
    mase,
    naive_mae,
    pinball_loss,
    smape,
)


def test_pinball_loss_charges_under_forecasts_q_and_over_forecasts_one_minus_q():
    # actual 10: forecast 8 is 2 short (0.9 * 2), forecast 12 is 2 long (0.1 * 2)
    assert pinball_loss([10.0], [8.0], 0.9) == pytest.approx(1.8)
    assert pinball_loss([10.0], [12.0], 0.9) == pytest.approx(0.2)
    assert pinball_loss([10.0, 10.0], [8.0, 12.0], 0.9) == pytest.approx(1.0)


def test_a_missing_actual_or_forecast_is_left_out_not_counted_as_zero():
    actual = [10.0, np.nan, 10.0, 10.0]
    forecast = [10.0, 0.0, np.inf, 12.0]
    assert mae(actual, forecast) == pytest.approx(1.0)
    assert coverage(actual, forecast) == pytest.approx(1.0)
    assert pinball_loss(actual, forecast, 0.5) == pytest.approx(0.5)


def test_a_score_over_no_valid_pair_is_nan():
    assert np.isnan(mae([np.nan], [1.0]))
    assert np.isnan(smape([], []))


def test_scores_reduce_per_horizon_step_along_axis_zero():
    actual = np.array([[1.0, 2.0], [3.0, 4.0]])
    forecast = np.array([[1.0, 0.0], [1.0, 4.0]])
    np.testing.assert_allclose(mae(actual, forecast, axis=0), [1.0, 1.0])
    np.testing.assert_allclose(coverage(actual, forecast, axis=0), [0.5, 0.5])


def test_smape_is_zero_when_actual_and_forecast_are_both_zero():
    assert smape([0.0, 0.0], [0.0, 0.0]) == 0.0
    assert smape([1.0], [0.0]) == pytest.approx(200.0)
    assert smape([100.0], [50.0]) == pytest.approx(200.0 * 50 / 150)


def test_mase_divides_the_mae_by_the_naive_in_sample_mae():
    history = [1.0, 3.0, 1.0, 3.0]
    assert naive_mae(history, lag=1) == pytest.approx(2.0)
    assert naive_mae(history, lag=2) == pytest.approx(0.0)
    assert mase([5.0], [4.0], scale=2.0) == pytest.approx(0.5)


def test_naive_mae_of_a_history_shorter_than_the_lag_is_nan():
    assert np.isnan(naive_mae([1.0, 2.0], lag=2))


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan")])
def test_mase_rejects_a_scale_that_is_not_positive(scale):
    with pytest.raises(ValueError, match="MASE scale"):
        mase([1.0], [1.0], scale)


def test_pinball_rejects_a_quantile_outside_zero_one():
    with pytest.raises(ValueError, match="between 0 and 1"):
        pinball_loss([1.0], [1.0], 1.0)


def test_scores_of_a_backtest_hold_one_value_per_horizon_step():
    actual = np.array([[10.0, 10.0, 10.0]] * 4)
    mean = actual - 1.0
    scores = Scores.of(actual, mean, mean + 2.0, 0.9, scale=2.0)
    np.testing.assert_allclose(scores.mase, [0.5, 0.5, 0.5])
    np.testing.assert_allclose(scores.coverage, [1.0, 1.0, 1.0])
    np.testing.assert_allclose(scores.pinball, [0.1, 0.1, 0.1])
