"""Conformal calibration: shift a model's quantiles by what its own backtest says they miss.

For each quantile level and horizon step, the offset is the q-quantile of
``actual - forecast_q`` over the backtest's origins (conformalised quantile
regression). Adding it makes the q0.9 forecast exceeded about 10% of the time
on data like the recent history, whatever the model's own error model assumed.
"""

from __future__ import annotations

import copy
import dataclasses
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
    adapt_rate: float = 0.05
    """Once live, how far a miss (or a hit) moves that level's target for its horizon
    step (adaptive conformal inference, Gibbs & Candès 2021): a run of misses raises
    the level the offsets are taken at until coverage is back on target. 0: off."""
    adapt_limit: float = 0.05
    """Most the target level moves either way: unbounded, a few misses in a row push the
    q0.9 target to the widest error in the ledger."""

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
    result: Backtest,
    levels: Sequence[float],
    spread: float = 0.25,
    min_origins: int = 4,
    shift: FloatArray | None = None,
) -> Offsets:
    """Offsets that make each level's forecast cover its share of the backtest's actuals.

    The offset is the empirical q-quantile of the misses, the shift
    with the least pinball loss on them; the conformal rank ``ceil((n + 1) q)``
    erred high by a whole rank and over-covered. ``shift`` (levels x steps)
    moves the level each offset is taken at.
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
            pooled = errors[:, lo:hi]
            level = q if shift is None else float(np.clip(q + shift[i, j], 0.001, 0.999))
            table[i, j] = _quantile(pooled, level)
    return Offsets(ordered, table, usable)


def _quantile(errors: FloatArray, q: float) -> float:
    """The ceil(q n)-th smallest finite error (0 when there is none)."""
    values = errors[np.isfinite(errors)]
    if values.size == 0:
        return 0.0
    # a partial sort, as this runs 72 times per update
    rank = min(values.size - 1, max(0, math.ceil(q * values.size - 1e-12) - 1))
    return float(np.partition(values, rank)[rank])


@dataclass(frozen=True)
class Ledger:
    """Recent forecasts at the calibrated levels and, as they arrive, what happened.

    A sliding window of origins, seeded by the fit's backtest and extended as
    the model moves on, so calibration follows the model's recent misses.
    """

    times: FloatArray
    """Unix time of each origin's first forecast step, oldest first."""
    step: float
    """Seconds between forecast steps."""
    actual: FloatArray
    """(origins x steps) actuals; NaN until known."""
    mean: FloatArray
    """(origins x steps) point forecasts."""
    quantiles: dict[float, FloatArray]
    """Level -> (origins x steps) raw (uncalibrated) forecasts."""

    @classmethod
    def seeded(cls, result: Backtest, series: Series, levels: Sequence[float]) -> Ledger:
        """The backtest's origins (run on ``series``) as the first entries."""
        h = result.horizon
        rows = result.origins.size
        return cls(
            series.start + series.step * result.origins.astype(np.float64),
            series.step,
            result.actual.copy(),
            result.mean.copy(),
            {q: result.quantile(q).copy() if rows else np.empty((0, h)) for q in levels},
        )

    def due(self, origin: float, stride: int) -> bool:
        """Whether ``origin`` is at least ``stride`` steps after the latest recorded one."""
        return self.times.size == 0 or origin >= self.times[-1] + (stride - 0.5) * self.step

    def recorded(self, forecast: Forecast, keep: int) -> Ledger:
        """With ``forecast`` (raw, from a new origin) appended; only the last ``keep`` kept."""
        h = self.actual.shape[1]

        def add(rows: FloatArray, row: FloatArray) -> FloatArray:
            return np.vstack([rows, row[None, :h]])[-keep:]

        return Ledger(
            np.append(self.times, forecast.start)[-keep:],
            self.step,
            add(self.actual, np.full(h, np.nan)),
            add(self.mean, forecast.mean),
            {q: add(v, forecast.quantile(q)) for q, v in self.quantiles.items()},
        )

    def resolved(self, series: Series) -> Ledger:
        """With every actual that ``series`` now holds filled in."""
        h = self.actual.shape[1]
        targets = self.times[:, None] + self.step * np.arange(h)
        idx = np.rint((targets - series.start) / series.step).astype(np.int64)
        known = (idx >= 0) & (idx < len(series))
        seen = series.values[np.clip(idx, 0, max(0, len(series) - 1))] if len(series) else idx * 0.0
        actual = np.where(known & np.isnan(self.actual), seen, self.actual)
        return dataclasses.replace(self, actual=actual)

    def as_backtest(self) -> Backtest:
        return Backtest(np.arange(self.times.size), self.actual, self.mean, self.quantiles)


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
        self.ledger_ = Ledger.seeded(result, series, s.levels)
        self.shift_ = np.zeros((len(s.levels), result.horizon))
        self.offsets_ = self._offsets()
        self.fallback_: str | None = None
        if self.offsets_.samples == 0:
            self.fallback_ = (
                f"only {len(result.origins)} backtest origins for {len(series)} points "
                f"(need {s.min_origins}): quantiles are the model's own, uncalibrated"
            )
        # The backtest's own model, moved on to the end of the series, saves a
        # full refit (the expensive part for boosted trees). One that fell back to a
        # simpler model for lack of history at the oldest origin would only move the
        # simpler model on, so it is refitted: the whole series may hold enough.
        last = result.last
        if last is None or getattr(last, "fallback_", None) is not None:
            self.model_ = self._fresh().fit(series)
        else:
            self.model_ = moved_on(last, series)
        return self

    def update(self, series: Series) -> Self:
        """Condition the model on newer history, and recalibrate on its latest misses.

        Before moving on, the model's raw forecast from where it stood joins the
        `Ledger`, once per backtest stride (so the ledger keeps the backtest's
        spacing however often the caller ticks); as actuals arrive, the offsets
        are re-estimated over the last ``backtest.origins`` origins, and each
        newly resolved miss or hit moves its level's target (``adapt_rate``, at
        most ``adapt_limit``). This is online conformal calibration: when the load
        turns more (or less) predictable than in the fit's backtest, the quantiles
        follow within hours, not at the next retrain.
        """
        s = self.settings
        ledger = self.ledger_
        origin = self.model_.predict(1, (0.5,)).start
        if ledger.due(origin, s.backtest.stride):
            raw = self.model_.predict(ledger.actual.shape[1], s.levels)
            ledger = ledger.recorded(raw, s.backtest.origins)
        self.model_ = moved_on(self.model_, series)
        self.ledger_ = ledger.resolved(series)
        self._adapt(ledger.actual)
        offsets = self._offsets()
        if offsets.samples:
            self.offsets_ = offsets
        return self

    def _adapt(self, unresolved: FloatArray) -> None:
        """Move each level's target by the misses and hits that just became known."""
        ledger = self.ledger_
        fresh = np.isnan(unresolved) & np.isfinite(ledger.actual)
        if not fresh.any():
            return
        for i, q in enumerate(self.offsets_.levels):
            served = ledger.quantiles[q] + self.offsets_.values[i]
            missed = ((ledger.actual > served) & fresh).sum(axis=0)
            self.shift_[i] += self.settings.adapt_rate * (missed - (1.0 - q) * fresh.sum(axis=0))
        limit = self.settings.adapt_limit
        np.clip(self.shift_, -limit, limit, out=self.shift_)

    def _offsets(self) -> Offsets:
        s = self.settings
        backtest = self.ledger_.as_backtest()
        return conformal_offsets(backtest, s.levels, s.spread, s.min_origins, shift=self.shift_)

    def predict(
        self, horizon_steps: int, quantiles: Sequence[float] = DEFAULT_QUANTILES
    ) -> Forecast:
        h = validate_horizon(horizon_steps)
        levels = validate_quantiles(quantiles)
        return self.offsets_.apply(self.model_.predict(h, levels))
