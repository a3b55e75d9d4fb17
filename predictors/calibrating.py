"""Conformal calibration: shift a model's quantiles by what its own backtest says they miss.

For each quantile level and horizon step, the offset is the conformal quantile
of ``actual - forecast_q`` over the backtest's origins (conformalised quantile
regression). Adding it makes the q0.9 forecast exceeded about 10% of the time
on data like the recent history, whatever the model's own error model assumed.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Self

import numpy as np

from foreseer.predictors.backtesting import Backtest, BacktestSettings, backtest
from foreseer.predictors.forecasts import (
    DEFAULT_QUANTILES,
    Forecast,
    Forecaster,
    monotone,
    moved_on,
    validate_horizon,
    validate_quantiles,
)
from foreseer.predictors.series import FloatArray, Series

CALIBRATED_LEVELS: tuple[float, ...] = (0.1, 0.5, 0.8, 0.9, 0.95, 0.99)


@dataclass(frozen=True)
class CalibrationSettings:
    """How the calibration backtest runs and which quantile levels it calibrates."""

    backtest: BacktestSettings = field(default_factory=BacktestSettings)
    """Origins and horizon of the calibration backtest."""
    levels: tuple[float, ...] = CALIBRATED_LEVELS
    """Levels calibrated directly; others interpolate between their neighbours' offsets."""
    spread: float = 0.25
    """Step ``j`` pools the errors of steps within ``j * (1 ± spread)``: neighbouring
    steps miss alike, and pooling steadies offsets estimated from few origins."""
    min_origins: int = 4
    """Fewer usable origins than this leaves the model uncalibrated (offsets of zero)."""

    def __post_init__(self) -> None:
        validate_quantiles(self.levels)
        if not self.levels:
            raise ValueError("CalibrationSettings.levels must name at least one level")
        if not 0.0 <= self.spread < 1.0:
            raise ValueError("CalibrationSettings.spread must lie in [0, 1)")


@dataclass(frozen=True)
class Offsets:
    """Additive quantile corrections per level and horizon step."""

    levels: tuple[float, ...]
    """Calibrated levels, ascending."""
    values: FloatArray
    """(levels x horizon steps) offsets; NaN-free."""
    samples: int
    """Origins the offsets were estimated from (0: uncalibrated)."""

    @classmethod
    def zero(cls, levels: Sequence[float], horizon: int) -> Offsets:
        return cls(tuple(sorted(levels)), np.zeros((len(levels), horizon)), 0)

    def at(self, q: float, horizon: int) -> FloatArray:
        """Offsets of level ``q`` for ``horizon`` steps; later steps repeat the last one.

        A level between two calibrated ones blends their offsets linearly; one
        outside the calibrated range takes the nearest level's.
        """
        cols = np.minimum(np.arange(horizon), self.values.shape[1] - 1)
        upper = int(np.clip(np.searchsorted(self.levels, q), 1, max(1, len(self.levels) - 1)))
        lower = upper - 1 if len(self.levels) > 1 else 0
        span = self.levels[upper] - self.levels[lower] if len(self.levels) > 1 else 1.0
        weight = float(np.clip((q - self.levels[lower]) / span, 0.0, 1.0)) if span else 0.0
        rows = self.values[:, cols]
        return np.asarray((1 - weight) * rows[lower] + weight * rows[min(upper, len(rows) - 1)])

    def apply(self, forecast: Forecast) -> Forecast:
        """The forecast with every quantile shifted, kept monotone across levels."""
        shifted = {q: v + self.at(q, forecast.horizon) for q, v in forecast.quantiles.items()}
        return Forecast(
            forecast.start, forecast.step, forecast.mean, monotone(shifted), forecast.model
        )


def conformal_offsets(
    result: Backtest, levels: Sequence[float], spread: float = 0.25, min_origins: int = 4
) -> Offsets:
    """Offsets that make each level's forecast cover its share of the backtest's actuals.

    Uses the finite-sample conformal rank ``ceil((n + 1) q)`` of the pooled
    errors, so a q0.9 offset from few origins errs on the safe (higher) side.
    """
    ordered = tuple(sorted(validate_quantiles(levels)))
    h = result.horizon
    usable = int(np.count_nonzero(np.isfinite(result.residuals()).any(axis=1)))
    if usable < min_origins:
        return Offsets.zero(ordered, h)
    table = np.zeros((len(ordered), h))
    for i, q in enumerate(ordered):
        errors = result.errors(q)
        for j in range(h):
            lo = math.floor(j * (1.0 - spread))
            hi = math.ceil(j * (1.0 + spread)) + 1
            table[i, j] = _conformal_quantile(errors[:, lo:hi], q)
    return Offsets(ordered, table, usable)


def _conformal_quantile(errors: FloatArray, q: float) -> float:
    pooled = np.sort(errors[np.isfinite(errors)])
    n = pooled.size
    if n == 0:
        return 0.0
    rank = min(n, max(1, math.ceil((n + 1) * q)))
    return float(pooled[rank - 1])


class Calibrated:
    """Wraps a forecaster so its quantiles are conformally calibrated per horizon step.

    ``Calibrated(HoltWinters())`` backtests copies of the wrapped (unfitted)
    model over recent origins, learns offsets from the misses, then fits the
    model on the whole series. Learned state: ``model_`` (the fitted copy),
    ``offsets_`` and ``fallback_`` (why it is uncalibrated, or None).
    """

    def __init__(self, model: Forecaster, settings: CalibrationSettings | None = None) -> None:
        self.model = model
        self.settings = settings or CalibrationSettings()

    def _fresh(self) -> Forecaster:
        # Deep-copying the unfitted prototype is scikit-learn's `clone` for classes
        # that are not BaseEstimators: same options, no learned state.
        return copy.deepcopy(self.model)

    def fit(self, series: Series) -> Self:
        result = backtest(self._fresh, series, self.settings.backtest, self.settings.levels)
        return self.fit_from(series, result)

    def fit_from(self, series: Series, result: Backtest) -> Self:
        """Fit on ``series`` with offsets from a backtest already run (AutoForecaster's)."""
        s = self.settings
        self.offsets_ = conformal_offsets(result, s.levels, s.spread, s.min_origins)
        self.fallback_: str | None = None
        if self.offsets_.samples == 0:
            self.fallback_ = (
                f"only {len(result.origins)} backtest origins for {len(series)} points "
                f"(need {s.min_origins}): quantiles are the model's own, uncalibrated"
            )
        # The backtest's own model, moved on to the end of the series, saves a
        # full refit (the expensive part for boosted trees).
        last = result.last
        self.model_ = self._fresh().fit(series) if last is None else moved_on(last, series)
        return self

    def update(self, series: Series) -> Self:
        """Condition the fitted model on newer history; the offsets stay as learned."""
        self.model_ = moved_on(self.model_, series)
        return self

    def predict(
        self, horizon_steps: int, quantiles: Sequence[float] = DEFAULT_QUANTILES
    ) -> Forecast:
        h = validate_horizon(horizon_steps)
        levels = validate_quantiles(quantiles)
        return self.offsets_.apply(self.model_.predict(h, levels))
