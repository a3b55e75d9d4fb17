"""Naive (last value) and seasonal naive (the value one season ago) forecasts.

Their raw quantiles are exact for the method: the empirical spread of the very
error the method makes, y[t + k] - y[t + k - lag(k)], over recent history.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from foreseer.predictors.gaps import last_observed
from foreseer.predictors.histories import History
from foreseer.predictors.modelling import HistoryModel
from foreseer.predictors.series import FloatArray

IntArray = npt.NDArray[np.int64]
SPREAD_WINDOW = 2016
"""How many recent errors the spread is measured on: a sample size, not a span (a week at
5 minutes, 1.4 days at 1 minute). The backtest predicts at every origin: a week of
1-minute errors made each prediction 3x slower (4.6 ms against 1.5 ms for 30 steps), which
cost the fit at 7 days of 1-minute steps about 0.6 s over its two naive models."""


def lagged_offsets(
    filled: FloatArray, lags: IntArray, levels: Sequence[float]
) -> dict[float, FloatArray]:
    """Per horizon step k: quantiles of filled[t] - filled[t - lags[k]] over the recent window.

    All distinct lags share one window of targets, so one vectorised quantile
    call serves every step; lags as long as the history give zero offsets.
    """
    out = {q: np.zeros(lags.size) for q in levels}
    distinct = np.unique(lags)
    distinct = distinct[distinct < filled.size]
    if distinct.size == 0 or not levels:
        return out
    longest = int(distinct.max())
    tail = filled[-(SPREAD_WINDOW + longest) :]
    targets = tail[longest:]
    errors = np.vstack([targets - tail[longest - lag : tail.size - lag] for lag in distinct])
    values = np.quantile(errors, list(levels), axis=1)  # levels x distinct lags
    where = np.searchsorted(distinct, lags)
    usable = lags < filled.size
    for i, q in enumerate(levels):
        out[q][usable] = values[i][where[usable]]
    return out


class Naive(HistoryModel):
    """Tomorrow looks like now: every step forecasts the last observed value."""

    name = "naive"
    last_: float
    """The last observed (non-anomalous) value."""

    def _fit(self, history: History) -> None:
        self.last_ = last_observed(history.clean)

    def _forecast(
        self, horizon: int, levels: tuple[float, ...]
    ) -> tuple[FloatArray, dict[float, FloatArray]]:
        lags = np.arange(1, horizon + 1, dtype=np.int64)
        return np.full(horizon, self.last_), lagged_offsets(self.history_.filled, lags, levels)


class SeasonalNaive(HistoryModel):
    """Each step repeats the value one season earlier; naive when no season is found.

    The season is `period` steps when given, else the shortest significant
    period detected. Anomalies in the previous season are masked and
    interpolated, so a one-off spike yesterday is not replayed today.
    """

    name = "seasonal_naive"
    period: int | None
    period_: int
    """The season length in steps that was used."""

    def __init__(
        self,
        period: int | None = None,
        periods: Sequence[int] | None = None,
        mask_anomalies: bool = True,
    ) -> None:
        super().__init__(periods, mask_anomalies)
        self.period = period

    def _fit(self, history: History) -> None:
        period = self.period or (history.periods[0] if history.periods else 0)
        if period < 2:
            self._degrade("no seasonal period found", Naive(history.periods))
        elif history.raw.size < period:
            self._degrade(f"history shorter than one season of {period} steps", Naive())
        self.period_ = period

    def _lags(self, horizon: int) -> IntArray:
        k = np.arange(1, horizon + 1, dtype=np.int64)
        return self.period_ * ((k + self.period_ - 1) // self.period_)

    def _forecast(
        self, horizon: int, levels: tuple[float, ...]
    ) -> tuple[FloatArray, dict[float, FloatArray]]:
        filled = self.history_.filled
        lags = self._lags(horizon)
        source = filled.size - 1 + np.arange(1, horizon + 1) - lags
        return filled[source], lagged_offsets(filled, lags, levels)
