"""Fourier seasonal model: significant harmonics of significant periods, plus a smoothed level.

The DSP idea in Crane: periods come from `periods.detect_periods` (tested on
the ACF), and within each period only the harmonics whose amplitude passes a
chi-square test against the residual noise are kept, so noise is not fitted
as shape. The season is a function of absolute time, so it extrapolates to any
horizon; the level is the deseasonalised load smoothed by EWMA with drift, so
the forecast follows the current level rather than the window's average.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from foreseer.predictors.ewma import ALPHAS, DRIFTS, EWMA
from foreseer.predictors.histories import History
from foreseer.predictors.holtwinters import (
    Smoothed,
    advance,
    extrapolate,
    newer_points,
    smooth,
    spread_growth,
)
from foreseer.predictors.modelling import HistoryModel, residual_offsets
from foreseer.predictors.periods import DAY
from foreseer.predictors.series import FloatArray, steps_in

LEVEL_WINDOW = 7 * DAY
"""Recent seconds the level's smoothing parameters are chosen on (a week)."""
CHI2_2DOF_P001 = 13.82
"""99.9% point of chi-square with 2 degrees of freedom: a harmonic's (cos, sin) pair test."""


def harmonic_frequencies(periods: Sequence[int], step: float, max_harmonics: int) -> FloatArray:
    """Distinct frequencies (cycles per second) of each period's first harmonics.

    A weekly harmonic that coincides with a daily one appears once.
    """
    out: list[float] = []
    for period in periods:
        for k in range(1, min(max_harmonics, period // 2) + 1):
            f = k / (period * step)
            if all(abs(f - g) > 1e-9 * f for g in out):
                out.append(f)
    return np.asarray(out, dtype=np.float64)


def design(times: FloatArray, freqs: FloatArray) -> FloatArray:
    """cos and sin columns for each frequency at absolute unix times."""
    angle = 2 * np.pi * np.outer(times, freqs)
    return np.hstack([np.cos(angle), np.sin(angle)])


def significant_season(
    times: FloatArray, y: FloatArray, freqs: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Fit intercept + trend + harmonics; keep the significant harmonics and refit them.

    Returns the kept frequencies and their (cos..., sin...) coefficients.
    """
    t = (times - times[0]) / max(times[-1] - times[0], 1.0)
    base = np.column_stack([np.ones_like(t), t])
    x = np.hstack([base, design(times, freqs)])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    noise = float(np.var(y - x @ coef))
    m = freqs.size
    amplitude2 = coef[2 : 2 + m] ** 2 + coef[2 + m :] ** 2
    # A cos/sin coefficient of white noise has variance ~ 2 * noise / n.
    stat = amplitude2 / (2 * 2 * max(noise, 1e-12) / y.size)
    kept = freqs[stat > CHI2_2DOF_P001]
    if kept.size == 0:
        return kept, np.empty(0)
    x = np.hstack([base, design(times, kept)])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    return kept, coef[2:]


class Fourier(HistoryModel):
    """Significant Fourier harmonics of every detected period, plus an EWMA level.

    Fits on the last `window_cycles` of the longest usable period (at least
    `min_window` seconds, at most `max_window`); a period needs `min_cycles`
    cycles in that window. With no significant period or harmonic it falls
    back to EWMA with drift.
    """

    name = "fourier"
    max_harmonics: int
    window_cycles: int
    min_cycles: int
    min_window: float
    max_window: float
    freqs_: FloatArray
    """The significant harmonic frequencies kept, in cycles per second."""
    coef_: FloatArray
    """Their cos then sin coefficients."""
    window_size_: int
    """How many recent points the season and level are fitted on."""
    level_: Smoothed
    """The EWMA state of the deseasonalised load."""

    def __init__(
        self,
        periods: Sequence[int] | None = None,
        mask_anomalies: bool = True,
        max_harmonics: int = 12,
        window_cycles: int = 4,
        min_cycles: int = 2,
        min_window: float = 3.5 * DAY,
        max_window: float = 28 * DAY,
    ) -> None:
        super().__init__(periods, mask_anomalies)
        self.max_harmonics = max_harmonics
        self.window_cycles = window_cycles
        self.min_cycles = min_cycles
        self.min_window = min_window
        self.max_window = max_window

    def _window(self, history: History) -> tuple[FloatArray, FloatArray]:
        n = history.filled.size
        size = min(self.window_size_, n)
        times = history.start + history.step * np.arange(n - size, n, dtype=np.float64)
        return np.asarray(times, dtype=np.float64), history.filled[-size:]

    def _season(self, times: FloatArray) -> FloatArray:
        if self.freqs_.size == 0:
            return np.zeros(times.size)
        season: FloatArray = design(times, self.freqs_) @ self.coef_
        return season

    def _fit(self, history: History) -> None:
        n = history.filled.size
        usable = [p for p in history.periods if n >= self.min_cycles * p]
        if not usable:
            self._degrade("no significant period", EWMA(history.periods))
            return
        step = history.step
        size = max(self.window_cycles * max(usable), steps_in(self.min_window, step))
        self.window_size_ = min(size, steps_in(self.max_window, step), n)
        times, y = self._window(history)
        usable = [p for p in usable if y.size >= self.min_cycles * p]
        freqs = harmonic_frequencies(usable, history.step, self.max_harmonics)
        self.freqs_, self.coef_ = significant_season(times, y, freqs)
        if self.freqs_.size == 0:
            self._degrade("no significant harmonic", EWMA(history.periods))
            return
        deseasoned = (y - self._season(times))[-steps_in(LEVEL_WINDOW, step) :]
        self.level_ = smooth(deseasoned, 0, ALPHAS, DRIFTS, (0.0,), (1.0,))

    def _update(self, previous: History, history: History) -> None:
        added = newer_points(previous, history)
        times, y = self._window(history)
        if added is not None:
            y, times = y[y.size - added :], times[times.size - added :]
            self.level_ = advance(self.level_, y - self._season(times))
        else:
            s = self.level_
            deseasoned = (y - self._season(times))[-steps_in(LEVEL_WINDOW, history.step) :]
            self.level_ = smooth(deseasoned, 0, (s.alpha,), (s.beta,), (0.0,), (1.0,))

    def _forecast(
        self, horizon: int, levels: tuple[float, ...]
    ) -> tuple[FloatArray, dict[float, FloatArray]]:
        h = self.history_
        times = h.end + h.step * np.arange(horizon, dtype=np.float64)
        mean = extrapolate(self.level_, horizon) + self._season(times)
        growth = spread_growth(self.level_, horizon)
        return mean, residual_offsets(self.level_.residuals, levels, growth)
