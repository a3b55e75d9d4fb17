"""Tiny forecasters for testing the selection and calibration machinery, not the models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

import numpy as np

from foreseer.predictors.forecasts import Forecast
from foreseer.predictors.series import Series


class LastMean:
    """Forecasts the mean of the last ``k`` observed points (after leaving out the ``skip``
    latest), with every quantile equal to it.

    Its quantiles carry no spread at all, so any coverage they reach comes from calibration.
    """

    def __init__(self, k: int = 1, fail_below: int = 0, skip: int = 0) -> None:
        self.k = k
        self.skip = skip
        self.fail_below = fail_below
        self.fits = 0

    def fit(self, series: Series) -> Self:
        observed = series.values[~np.isnan(series.values)]
        if observed.size < max(1, self.fail_below):
            raise ValueError(f"LastMean needs {self.fail_below} points, got {observed.size}")
        recent = observed[: observed.size - self.skip] if self.skip else observed
        self.level_ = float(recent[-self.k :].mean())
        self.end_ = series.end
        self.step_ = series.step
        self.fits += 1
        return self

    def predict(self, horizon_steps: int, quantiles: Sequence[float] = (0.5, 0.9)) -> Forecast:
        mean = np.full(horizon_steps, self.level_)
        return Forecast(
            self.end_, self.step_, mean, {q: mean.copy() for q in quantiles}, "last-mean"
        )


class UpdatableLastMean(LastMean):
    """LastMean that moves to a new origin with `update`, counting how often it does."""

    updates = 0

    def update(self, series: Series) -> Self:
        self.updates += 1
        self.fits -= 1
        return self.fit(series)


class Shifted:
    """Another forecaster's forecasts moved by ``shift``: a model with a known bias."""

    def __init__(self, inner: LastMean, shift: float) -> None:
        self.inner = inner
        self.shift = shift

    def fit(self, series: Series) -> Self:
        self.inner.fit(series)
        return self

    def predict(self, horizon_steps: int, quantiles: Sequence[float] = (0.5, 0.9)) -> Forecast:
        f = self.inner.predict(horizon_steps, quantiles)
        moved = {q: v + self.shift for q, v in f.quantiles.items()}
        return Forecast(f.start, f.step, f.mean + self.shift, moved, f"shifted {self.shift}")


def noisy_series(n: int, seed: int = 0, sigma: float = 5.0, level: float = 100.0) -> Series:
    """A level with i.i.d. Gaussian noise, on a 5-minute grid."""
    rng = np.random.default_rng(seed)
    return Series(0.0, 300.0, level + sigma * rng.standard_normal(n))


def random_walk(n: int, seed: int = 0) -> Series:
    """A positive random walk: the last value is the best forecast."""
    rng = np.random.default_rng(seed)
    return Series(0.0, 300.0, 1000.0 + np.cumsum(rng.standard_normal(n) * 10.0))
