"""`Forecast` and the scikit-learn-style `Forecaster` protocol every model follows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, Self, runtime_checkable

import numpy as np

from foreseer.predictors.series import FloatArray, Series

DEFAULT_QUANTILES: tuple[float, ...] = (0.5, 0.9)


@dataclass(frozen=True)
class Forecast:
    """A forecast over ``horizon`` steps after the end of the fitted series."""

    start: float
    """Unix time of the first forecast step (the end of the history)."""
    step: float
    """Seconds between forecast steps (the series step)."""
    mean: FloatArray
    """The point forecast, one value per horizon step."""
    quantiles: Mapping[float, FloatArray] = field(default_factory=dict)
    """Quantile level -> values per horizon step; monotone across levels."""
    model: str = ""
    """Which model produced it (for AutoForecaster, the one that won)."""

    @property
    def horizon(self) -> int:
        return int(self.mean.shape[0])

    def quantile(self, q: float) -> FloatArray:
        """The forecast at quantile ``q``; raises KeyError naming what is available."""
        for level, values in self.quantiles.items():
            if abs(level - q) < 1e-9:
                return values
        raise KeyError(f"quantile {q} was not predicted; have {sorted(self.quantiles)}")


@runtime_checkable
class Forecaster(Protocol):
    """fit(series) -> self; predict(horizon_steps, quantiles) -> Forecast.

    Learned state lives in attributes ending in ``_``. Fitting tolerates NaN
    gaps and short histories: with too little data a model degrades to a
    simpler one and records that in ``fallback_`` (None when it did not).
    """

    def fit(self, series: Series) -> Self: ...

    def predict(
        self, horizon_steps: int, quantiles: Sequence[float] = DEFAULT_QUANTILES
    ) -> Forecast: ...


@runtime_checkable
class Updatable(Protocol):
    """A fitted forecaster that can move its origin to newer data without a full refit.

    ``update(series)`` keeps what ``fit`` learned (parameters, a model choice,
    calibration) and conditions on ``series``, the history up to the new origin.
    Backtests and the operator's tick use it to forecast from every origin cheaply.
    """

    def update(self, series: Series) -> Self: ...


def moved_on(model: Forecaster, series: Series) -> Forecaster:
    """``model.update(series)`` when the model is `Updatable`, else a full ``model.fit(series)``."""
    if isinstance(model, Updatable):
        updated: Forecaster = model.update(series)
        return updated
    return model.fit(series)


def validate_quantiles(quantiles: Sequence[float]) -> tuple[float, ...]:
    """Quantile levels, checked to lie strictly between 0 and 1."""
    levels = tuple(float(q) for q in quantiles)
    for q in levels:
        if not 0.0 < q < 1.0:
            raise ValueError(f"quantile levels must lie strictly between 0 and 1, got {q}")
    return levels


def validate_horizon(horizon_steps: int) -> int:
    """A horizon of at least one step."""
    h = int(horizon_steps)
    if h < 1:
        raise ValueError(f"horizon_steps must be at least 1, got {horizon_steps}")
    return h


def monotone(quantiles: Mapping[float, FloatArray]) -> dict[float, FloatArray]:
    """Sort quantile arrays across levels so a higher level is never below a lower one."""
    levels = sorted(quantiles)
    if not levels:
        return {}
    stacked = np.sort(np.vstack([quantiles[q] for q in levels]), axis=0)
    return {q: stacked[i] for i, q in enumerate(levels)}
