"""Rolling-origin backtests: forecast from several recent origins and compare with what happened."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from foreseer.predictors.forecasts import (
    Forecast,
    Forecaster,
    moved_on,
    validate_horizon,
    validate_quantiles,
)
from foreseer.predictors.series import FloatArray, Series

Factory = Callable[[], Forecaster]
"""Makes a fresh, unfitted forecaster (a model class, or a lambda setting its options)."""

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class BacktestSettings:
    """Where the rolling origins go and how much history each fit sees."""

    horizon: int = 12
    """Steps forecast from each origin."""
    origins: int = 24
    """Most origins; the latest leaves exactly ``horizon`` points of actuals after it."""
    stride: int = 3
    """Steps between consecutive origins."""
    window: int | None = None
    """Most recent points each fit sees; None fits on all history before the origin."""
    min_history: int = 24
    """Fewest observed points before an origin; earlier origins are skipped."""
    refit_every: int | None = None
    """An `Updatable` model is refitted every this many origins and updated in between
    (None: fitted once at the oldest origin); other models are refitted at every origin."""

    def __post_init__(self) -> None:
        validate_horizon(self.horizon)
        for name in ("origins", "stride", "min_history"):
            if getattr(self, name) < 1:
                raise ValueError(f"BacktestSettings.{name} must be at least 1")
        if self.refit_every is not None and self.refit_every < 1:
            raise ValueError("BacktestSettings.refit_every must be at least 1 (or None)")
        if self.window is not None and self.window < self.min_history:
            raise ValueError("BacktestSettings.window must be at least min_history")

    def origin_indices(self, series: Series) -> IntArray:
        """Indices (points of history) of the usable origins, oldest first."""
        n = len(series)
        latest = n - self.horizon
        idx = latest - self.stride * np.arange(self.origins, dtype=np.int64)
        observed = np.concatenate([[0], np.cumsum(~np.isnan(series.values))])
        idx = idx[idx > 0]
        idx = idx[observed[idx] >= self.min_history]
        return np.sort(idx)


@dataclass(frozen=True)
class Backtest:
    """Forecasts from each origin next to the actuals, as (origins x horizon steps) arrays."""

    origins: IntArray
    """Index of the first forecast point of each origin (the history length)."""
    actual: FloatArray
    """What happened; NaN where the series had a gap."""
    mean: FloatArray
    """Point forecasts; a row of NaN where the model failed at that origin."""
    quantiles: dict[float, FloatArray] = field(default_factory=dict)
    """Quantile level -> forecasts."""
    failures: tuple[str, ...] = ()
    """Why the model failed at some origins (its ValueError messages)."""
    last: Forecaster | None = field(default=None, compare=False, repr=False)
    """The model as it stood at the latest origin, for a caller to move on instead of refit."""

    @classmethod
    def empty(cls, horizon: int) -> Backtest:
        """A backtest with no origins, for a history too short to have any."""
        nothing = np.empty((0, horizon))
        return cls(np.empty(0, dtype=np.int64), nothing, nothing.copy())

    @property
    def horizon(self) -> int:
        return int(self.actual.shape[1])

    def residuals(self) -> FloatArray:
        """actual - mean, per origin and horizon step."""
        return self.actual - self.mean

    def errors(self, q: float) -> FloatArray:
        """actual - q forecast: positive where the quantile was exceeded."""
        return self.actual - self.quantile(q)

    def quantile(self, q: float) -> FloatArray:
        for level, values in self.quantiles.items():
            if abs(level - q) < 1e-9:
                return values
        raise KeyError(f"the backtest has no quantile {q}; have {sorted(self.quantiles)}")

    def subset(self, rows: npt.NDArray[np.bool_]) -> Backtest:
        """The backtest restricted to some origins (for cross-fitting)."""
        return Backtest(
            self.origins[rows],
            self.actual[rows],
            self.mean[rows],
            {q: v[rows] for q, v in self.quantiles.items()},
            self.failures,
            self.last,
        )


def backtest(
    factory: Factory,
    series: Series,
    settings: BacktestSettings,
    quantiles: Sequence[float] = (0.5, 0.9),
) -> Backtest:
    """Fit at each origin on the history before it, forecast ``settings.horizon`` steps.

    A model that is `Updatable` is fitted at the oldest origin (and every
    ``refit_every`` origins) and moved forward with ``update`` in between, which
    is what the operator does between retrains; others are refitted at every
    origin. A ValueError at an origin (for example too little data for that
    model) leaves that row NaN and is recorded in ``failures``, so one bad
    origin does not sink a comparison.
    """
    levels = validate_quantiles(quantiles)
    origins = settings.origin_indices(series)
    h = settings.horizon
    shape = (origins.size, h)
    actual = np.full(shape, np.nan)
    mean = np.full(shape, np.nan)
    quants = {q: np.full(shape, np.nan) for q in levels}
    failures: list[str] = []
    model: Forecaster | None = None
    for row, origin in enumerate(origins):
        actual[row] = series.values[origin : origin + h]
        history = _history(series, int(origin), settings.window)
        if settings.refit_every is not None and row % settings.refit_every == 0:
            model = None
        try:
            model = _advance(model, factory, history)
            forecast = model.predict(h, levels)
        except ValueError as exc:
            model = None
            failures.append(f"origin {int(origin)}: {exc}")
            continue
        _store(forecast, row, mean, quants)
    return Backtest(origins, actual, mean, quants, tuple(failures), model)


def _history(series: Series, origin: int, window: int | None) -> Series:
    lo = 0 if window is None else max(0, origin - window)
    return Series(series.start + lo * series.step, series.step, series.values[lo:origin])


def _advance(model: Forecaster | None, factory: Factory, history: Series) -> Forecaster:
    return factory().fit(history) if model is None else moved_on(model, history)


def _store(forecast: Forecast, row: int, mean: FloatArray, quants: dict[float, FloatArray]) -> None:
    mean[row] = forecast.mean
    for q, values in quants.items():
        values[row] = forecast.quantile(q)
