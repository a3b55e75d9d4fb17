"""The forecast benchmark's anchors, kept outside `predictors/` so the comparison is honest.

Each gives a point forecast only; the benchmark sets its q0.9 to the point
plus the empirical q0.9 of the anchor's own earlier backtest residuals at that
horizon. All three are `Updatable`, like the operator's models, so the
benchmark can move them along its origins cheaply.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Self

import numpy as np

from foreseer.predictors.forecasts import Forecast
from foreseer.predictors.gaps import interpolate_gaps
from foreseer.predictors.series import FloatArray, Series

DAY = 86400.0


def daily_period(step: float, points: int) -> int | None:
    """The day in steps, when the step divides it and ``points`` hold two days; else None."""
    period = DAY / step
    if abs(period - round(period)) > 1e-9 or round(period) < 2 or points < 2 * round(period):
        return None
    return round(period)


class _PointAnchor:
    """Shared fit/update/predict plumbing: subclasses compute ``_path(values, horizon)``."""

    name = "anchor"

    def fit(self, series: Series) -> Self:
        observed = ~np.isnan(series.values)
        if not observed.any():
            raise ValueError("the history has no observed values")
        self.values_ = interpolate_gaps(series.values)
        self.end_ = series.end
        self.step_ = series.step
        return self

    def update(self, series: Series) -> Self:
        return self.fit(series)

    def _path(self, values: FloatArray, horizon: int) -> FloatArray:
        raise NotImplementedError

    def predict(self, horizon_steps: int, quantiles: Sequence[float] = ()) -> Forecast:
        mean = self._path(self.values_, horizon_steps)
        return Forecast(self.end_, self.step_, mean, {}, self.name)


class NaiveAnchor(_PointAnchor):
    """The last value, forever."""

    name = "anchor_naive"

    def _path(self, values: FloatArray, horizon: int) -> FloatArray:
        return np.full(horizon, values[-1])


class SeasonalNaiveAnchor(_PointAnchor):
    """The value one day earlier (the last value when there is no daily period)."""

    name = "anchor_seasonal_naive"

    def _path(self, values: FloatArray, horizon: int) -> FloatArray:
        period = daily_period(self.step_, values.size)
        if period is None:
            return np.full(horizon, values[-1])
        steps = np.arange(horizon)
        return np.asarray(values[values.size - period + steps % period], dtype=np.float64)


class HoltWintersAnchor(_PointAnchor):
    """statsmodels' ExponentialSmoothing: additive damped trend, additive daily season.

    Parameters are optimised on ``fit`` over the last ``days`` days (what a user
    tuning the predictive HPA would get); ``update`` re-runs the filter on the
    newer window with those parameters, as between the user's re-tunes.
    """

    name = "anchor_holt_winters"

    def __init__(self, days: float = 14.0) -> None:
        self.days = days

    def _model(self, values: FloatArray, init: str) -> Any:
        from statsmodels.tsa.holtwinters import ExponentialSmoothing

        period = daily_period(self.step_, values.size)
        return ExponentialSmoothing(
            values,
            trend="add",
            damped_trend=True,
            seasonal="add" if period else None,
            seasonal_periods=period,
            initialization_method=init,
        )

    def fit(self, series: Series) -> Self:
        super().fit(series.tail(round(self.days * DAY / series.step)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter on flat series
            self.params_ = dict(self._model(self.values_, "heuristic").fit().params)
        return self

    def update(self, series: Series) -> Self:
        if not hasattr(self, "params_"):
            return self.fit(series)
        super().fit(series.tail(round(self.days * DAY / series.step)))
        return self

    def _path(self, values: FloatArray, horizon: int) -> FloatArray:
        p = self.params_
        fixed = {
            "smoothing_level": p["smoothing_level"],
            "smoothing_trend": p["smoothing_trend"],
            "damping_trend": p["damping_trend"],
        }
        if daily_period(self.step_, values.size):
            fixed["smoothing_seasonal"] = p["smoothing_seasonal"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fitted = self._model(values, "heuristic").fit(optimized=False, **fixed)
        return np.asarray(fitted.forecast(horizon), dtype=np.float64)


ANCHORS = {
    "anchor_naive": NaiveAnchor,
    "anchor_seasonal_naive": SeasonalNaiveAnchor,
    "anchor_holt_winters": HoltWintersAnchor,
}
"""Anchor name -> factory."""
