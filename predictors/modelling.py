"""The shared skeleton of every model family: checked input, anomaly masking, fallbacks.

`HistoryModel.fit` prepares the series once (see `histories.prepare`) and hands
the `History` to the family's `_fit`; `predict` checks the request, asks the
family for its mean and raw quantile offsets, then clips at zero (a load is
never negative) and sorts the quantiles so they never cross. A family that
finds too little data calls `_degrade` with a simpler model and a reason; the
reason is kept in `fallback_` and the simpler model answers every prediction.

Raw quantiles come from the spread of in-sample residuals scaled by the
horizon; the model-selection layer calibrates them conformally afterwards.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar, Self

import numpy as np

from foreseer.predictors.forecasts import (
    DEFAULT_QUANTILES,
    Forecast,
    Forecaster,
    monotone,
    validate_horizon,
    validate_quantiles,
)
from foreseer.predictors.histories import BoolArray, History, extend, prepare
from foreseer.predictors.series import FloatArray, Series


def residual_offsets(
    residuals: FloatArray, levels: Sequence[float], growth: FloatArray
) -> dict[float, FloatArray]:
    """Quantile offsets around the mean: residual quantile at each level times `growth[h]`.

    `growth` is how the one-step spread widens with the horizon (1 at step 1).
    No residuals at all (a single point) gives zero-width quantiles.
    """
    finite = residuals[np.isfinite(residuals)]
    if finite.size == 0:
        return {q: np.zeros(growth.size) for q in levels}
    centre, *values = np.quantile(finite, [0.5, *levels])
    return {q: (float(v) - float(centre)) * growth for q, v in zip(levels, values, strict=True)}


class HistoryModel(ABC):
    """Base of the model families; subclasses set `name` and implement `_fit` / `_forecast`."""

    name: ClassVar[str]
    periods: tuple[int, ...] | None
    mask_anomalies: bool

    history_: History
    """The prepared training series (checked, anomalies masked, gaps filled)."""
    anomalies_: BoolArray
    """True where a training point was flagged as an anomaly and left out of fitting."""
    n_anomalies_: int
    """How many training points were flagged."""
    fallback_: str | None
    """Why the model degraded to a simpler one, or None when it did not."""
    delegate_: Forecaster | None
    """The simpler model answering predictions after a fallback."""

    def __init__(self, periods: Sequence[int] | None = None, mask_anomalies: bool = True) -> None:
        self.periods = None if periods is None else tuple(int(p) for p in periods)
        self.mask_anomalies = mask_anomalies

    def fit(self, series: Series) -> Self:
        history = prepare(series, self.periods, self.mask_anomalies)
        self._adopt(history)
        self.fallback_ = None
        self.delegate_ = None
        self._fit(history)
        return self

    def update(self, series: Series) -> Self:
        """Condition on newer history, keeping the periods and parameters `fit` learned.

        The backtest and the operator's tick call this between refits. A model
        that was never fitted is fitted; one that fell back moves its simpler
        model on (the next `fit` decides again whether there is enough data).
        """
        if not hasattr(self, "history_"):
            return self.fit(series)
        if isinstance(self.delegate_, HistoryModel):
            self.delegate_.update(series)
            self._adopt(self.delegate_.history_)
            return self
        if self.delegate_ is not None:
            return self.fit(series)
        previous = self.history_
        history = extend(previous, series, self.mask_anomalies)
        self._adopt(history)
        self._update(previous, history)
        return self

    def _adopt(self, history: History) -> None:
        self.history_ = history
        self.anomalies_ = history.anomalies
        self.n_anomalies_ = int(history.anomalies.sum())

    def _update(self, previous: History, history: History) -> None:
        """Re-condition on `history` (after `previous`); by default a refit, cheap for most."""
        self.fallback_ = None
        self._fit(history)

    def predict(
        self, horizon_steps: int, quantiles: Sequence[float] = DEFAULT_QUANTILES
    ) -> Forecast:
        h = validate_horizon(horizon_steps)
        levels = validate_quantiles(quantiles)
        if not hasattr(self, "history_"):
            raise RuntimeError(f"{type(self).__name__} must be fitted before predict()")
        history = self.history_
        if self.delegate_ is not None:
            inner = self.delegate_.predict(h, levels)
            return Forecast(history.end, history.step, inner.mean, inner.quantiles, self.name)
        mean, offsets = self._forecast(h, levels)
        mean = np.maximum(np.nan_to_num(mean, nan=0.0), 0.0)
        bands = {q: np.maximum(mean + np.nan_to_num(offsets[q]), 0.0) for q in levels}
        return Forecast(history.end, history.step, mean, monotone(bands), self.name)

    def _degrade(self, reason: str, simpler: Forecaster) -> None:
        """Answer predictions with `simpler`, fitted on the same series, and say why."""
        history = self.history_
        self.fallback_ = reason
        self.delegate_ = simpler.fit(Series(history.start, history.step, history.raw))

    @abstractmethod
    def _fit(self, history: History) -> None:
        """Learn from a prepared history; may call `_degrade`."""

    @abstractmethod
    def _forecast(
        self, horizon: int, levels: tuple[float, ...]
    ) -> tuple[FloatArray, dict[float, FloatArray]]:
        """Mean per horizon step, and offsets from the mean per quantile level."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
