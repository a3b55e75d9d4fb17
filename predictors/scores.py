"""Forecast scores: pinball loss, MASE, sMAPE and quantile coverage.

Pure numpy and NaN-aware: a pair where the actual or the forecast is missing
(NaN or inf) is left out, never counted as zero. A score over no pairs is NaN.
Every score takes ``axis`` like numpy reductions, so a backtest's
(origins x horizon steps) arrays give one score per horizon step with ``axis=0``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from foreseer.predictors.series import FloatArray

ArrayLike = npt.ArrayLike


def _pairs(
    actual: ArrayLike, predicted: ArrayLike
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_]]:
    y = np.asarray(actual, dtype=np.float64)
    p = np.asarray(predicted, dtype=np.float64)
    y, p = np.broadcast_arrays(y, p)
    return y, p, np.isfinite(y) & np.isfinite(p)


def _mean(values: FloatArray, valid: npt.NDArray[np.bool_], axis: int | None) -> FloatArray:
    with warnings.catch_warnings():
        # "Mean of empty slice": no valid pair gives NaN, which is the answer we want.
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return np.asarray(np.nanmean(np.where(valid, values, np.nan), axis=axis), dtype=np.float64)


def pinball_loss(
    actual: ArrayLike, predicted: ArrayLike, q: float, axis: int | None = None
) -> FloatArray:
    """Mean pinball (quantile) loss of the ``q`` forecast.

    Under-forecasting costs ``q`` per unit and over-forecasting ``1 - q``, so at
    q=0.9 running short is nine times worse than over-provisioning.
    """
    if not 0.0 < q < 1.0:
        raise ValueError(f"pinball quantile must lie strictly between 0 and 1, got {q}")
    y, p, valid = _pairs(actual, predicted)
    diff = np.where(valid, y - p, 0.0)
    loss = np.maximum(q * diff, (q - 1.0) * diff)
    return _mean(loss, valid, axis)


def mae(actual: ArrayLike, predicted: ArrayLike, axis: int | None = None) -> FloatArray:
    """Mean absolute error."""
    y, p, valid = _pairs(actual, predicted)
    return _mean(np.abs(np.where(valid, y - p, 0.0)), valid, axis)


def mase(
    actual: ArrayLike, predicted: ArrayLike, scale: float, axis: int | None = None
) -> FloatArray:
    """Mean absolute scaled error: the MAE divided by ``scale``.

    ``scale`` is the in-sample MAE of a naive forecast (see `naive_mae`), so 1.0
    means "as good as the naive model was on the history".
    """
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"MASE scale must be a positive finite number, got {scale}")
    return mae(actual, predicted, axis) / scale


def smape(actual: ArrayLike, predicted: ArrayLike, axis: int | None = None) -> FloatArray:
    """Symmetric mean absolute percentage error, in percent (0 to 200).

    A pair where both the actual and the forecast are zero is a perfect
    forecast (0), not a division by zero.
    """
    y, p, valid = _pairs(actual, predicted)
    y, p = np.where(valid, y, 0.0), np.where(valid, p, 0.0)
    denom = np.abs(y) + np.abs(p)
    safe = np.where(denom > 0, denom, 1.0)
    terms = np.where(denom > 0, 200.0 * np.abs(y - p) / safe, 0.0)
    return _mean(terms, valid, axis)


def coverage(actual: ArrayLike, upper: ArrayLike, axis: int | None = None) -> FloatArray:
    """Share of actuals at or below the ``upper`` quantile forecast.

    A well-calibrated q0.9 forecast has a coverage of about 0.9.
    """
    y, p, valid = _pairs(actual, upper)
    return _mean((y <= p).astype(np.float64), valid, axis)


def naive_mae(values: ArrayLike, lag: int = 1) -> float:
    """In-sample MAE of the (seasonal) naive forecast ``y[t] = y[t - lag]``: the MASE scale.

    Returns NaN when no pair of observed points ``lag`` apart exists.
    """
    if lag < 1:
        raise ValueError(f"naive lag must be at least 1, got {lag}")
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"values must be one-dimensional, got shape {v.shape}")
    if v.size <= lag:
        return float("nan")
    return float(mae(v[lag:], v[:-lag]))


@dataclass(frozen=True)
class Scores:
    """One model's scores per horizon step (arrays of length horizon)."""

    q: float
    """The quantile level that ``pinball`` and ``coverage`` refer to."""
    mase: FloatArray
    """MAE of the point forecast over the naive in-sample MAE."""
    smape: FloatArray
    """sMAPE of the point forecast, in percent."""
    pinball: FloatArray
    """Pinball loss of the ``q`` forecast, in the series' units."""
    coverage: FloatArray
    """Share of actuals at or below the ``q`` forecast."""

    @classmethod
    def of(
        cls,
        actual: ArrayLike,
        mean: ArrayLike,
        upper: ArrayLike,
        q: float,
        scale: float,
    ) -> Scores:
        """Score (origins x steps) forecasts per step; ``scale`` is the MASE denominator."""
        return cls(
            q=q,
            mase=mase(actual, mean, scale, axis=0),
            smape=smape(actual, mean, axis=0),
            pinball=pinball_loss(actual, upper, q, axis=0),
            coverage=coverage(actual, upper, axis=0),
        )
