"""Holt-Winters: additive level, damped trend and additive season, in error-correction form.

Own numpy implementation rather than statsmodels (kept for the benchmark's
anchor so predictors stay light): the recursion is a dozen lines, and instead
of a local optimiser we score a grid of parameter sets at once, each time step
updating a vector of states. One pass over a bounded window costs a few tens
of milliseconds, has no local minima and never fails to converge.

Recursion for parameter set (alpha, beta, gamma, phi) and season m::

    yhat_t = l + phi * b + s[t mod m]
    e_t    = y_t - yhat_t
    l      = l + phi * b + alpha * e_t
    b      = phi * b + alpha * beta * e_t
    s[t mod m] += gamma * (1 - alpha) * e_t
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from foreseer.predictors.histories import History
from foreseer.predictors.modelling import HistoryModel, residual_offsets
from foreseer.predictors.naive import Naive
from foreseer.predictors.periods import DAY
from foreseer.predictors.series import FloatArray, steps_in

ALPHAS = (0.05, 0.1, 0.2, 0.35, 0.5, 0.7, 0.9)
BETAS = (0.0, 0.02, 0.1, 0.3)
GAMMAS = (0.0, 0.05, 0.15, 0.3, 0.5)
PHIS = (0.8, 0.9, 0.98)
RESIDUALS_KEPT = 2016
"""Recent one-step residuals kept for the quantile spread: a sample size, not a span
(quantiles from 2016 residuals are steady, and every model the operator holds keeps them)."""


@dataclass(frozen=True)
class Smoothed:
    """The best parameter set on a window, its final state and its one-step residuals."""

    alpha: float
    beta: float
    gamma: float
    phi: float
    level: float
    trend: float
    season: FloatArray
    """Seasonal state, indexed by (time since window start) mod period; empty without season."""
    phase: int
    """Window length: the seasonal index of the first forecast step is phase mod period."""
    residuals: FloatArray


def recurse(
    y: FloatArray,
    params: FloatArray,
    level: FloatArray,
    trend: FloatArray,
    season: FloatArray,
    phase: int,
) -> FloatArray:
    """Run the recursion over `y` for each parameter row (alpha, beta, gamma, phi).

    Updates `level`, `trend` (one per row) and `season` (rows x period, or
    rows x 0) in place, `y[0]` having seasonal index `phase`; returns the
    one-step errors (len(y) x rows).
    """
    a, beta, g, p = params.T
    period = season.shape[1]
    gain_s = g * (1 - a)
    gain_b = a * beta
    errors = np.empty((y.size, params.shape[0]))
    for i in range(y.size):
        damped = p * trend
        forecast = level + damped
        if period:
            idx = (phase + i) % period
            forecast = forecast + season[:, idx]
        err = y[i] - forecast
        level[:] = level + damped + a * err
        trend[:] = damped + gain_b * err
        if period:
            season[:, idx] += gain_s * err
        errors[i] = err
    return errors


def smooth(
    y: FloatArray,
    period: int,
    alphas: Sequence[float],
    betas: Sequence[float],
    gammas: Sequence[float],
    phis: Sequence[float],
) -> Smoothed:
    """Run every parameter combination over `y` (no NaN) and keep the least-squares one.

    With a season, the first cycle initialises level and season and is not
    scored; without one (`period` 0), the first value initialises the level.
    """
    grid = np.array(list(itertools.product(alphas, betas, gammas if period else (0.0,), phis)))
    start = period if period else 1
    level = np.full(len(grid), float(np.mean(y[:start])))
    trend = np.zeros(len(grid))
    season = np.tile(y[:period] - level[0], (len(grid), 1))
    errors = recurse(y[start:], grid, level, trend, season, start)
    best = int(np.argmin(np.einsum("ij,ij->j", errors, errors))) if errors.size else 0
    alpha, beta, gamma, phi = (float(v) for v in grid[best])
    return Smoothed(
        alpha=alpha,
        beta=beta,
        gamma=gamma,
        phi=phi,
        level=float(level[best]),
        trend=float(trend[best]),
        season=season[best].copy(),
        phase=y.size,
        residuals=errors[:, best].copy(),
    )


def advance(state: Smoothed, y: FloatArray, keep: int = RESIDUALS_KEPT) -> Smoothed:
    """The state moved forward over newer points `y`, keeping the last `keep` residuals."""
    params = np.array([[state.alpha, state.beta, state.gamma, state.phi]])
    level, trend = np.array([state.level]), np.array([state.trend])
    season = state.season.reshape(1, -1).copy()
    errors = recurse(y, params, level, trend, season, state.phase)
    return Smoothed(
        alpha=state.alpha,
        beta=state.beta,
        gamma=state.gamma,
        phi=state.phi,
        level=float(level[0]),
        trend=float(trend[0]),
        season=season[0],
        phase=state.phase + y.size,
        residuals=np.concatenate((state.residuals, errors[:, 0]))[-keep:],
    )


def newer_points(before: History, after: History) -> int | None:
    """How many points `after` adds at the end of `before`, or None when it does not extend it."""
    if after.step != before.step:
        return None
    added = round((after.end - before.end) / after.step)
    return added if 0 <= added < after.raw.size else None


@dataclass(frozen=True)
class Trajectory:
    """The states a parameter set passes through over a whole series, for h-step forecasts
    from every origin at once (the boosting model uses them as a feature)."""

    level: FloatArray
    """Level after each point."""
    trend: FloatArray
    """Trend after each point."""
    written: FloatArray
    """The seasonal value stored at each point's phase after it (empty without season)."""
    phi: float
    period: int
    final: Smoothed
    """The state after the last point, to forecast or `advance` from."""

    def forecast(self, origin: npt.NDArray[np.int64], h: npt.NDArray[np.int64]) -> FloatArray:
        """The h-step forecast made at each origin (origins at or after the first point)."""
        damping = self.phi * (1 - self.phi**h) / (1 - self.phi) if self.phi != 1 else h * 1.0
        out = self.level[origin] + damping * self.trend[origin]
        if self.period:
            m = self.period
            source = origin + h - m * ((h + m - 1) // m)
            out = out + np.where(source >= 0, self.written[np.maximum(source, 0)], 0.0)
        return np.asarray(out, dtype=np.float64)


def trajectory(y: FloatArray, state: Smoothed) -> Trajectory:
    """Run `state`'s parameters over all of `y` (no NaN), recording every state."""
    period = state.season.size
    a, p = state.alpha, state.phi
    gain_b, gain_s = state.alpha * state.beta, state.gamma * (1 - state.alpha)
    start = min(period if period else 1, y.size)
    level_now = float(np.mean(y[:start]))
    trend_now = 0.0
    season = [float(v) - level_now for v in y[:period]]
    n = y.size
    level, trend, written = np.empty(n), np.empty(n), np.zeros(n if period else 0)
    level[:start], trend[:start] = level_now, 0.0
    if period:
        written[:start] = season[:start]
    values = y.tolist()  # plain floats: a scalar loop is several times faster than numpy here
    for t in range(start, n):
        damped = p * trend_now
        idx = t % period if period else 0
        err = values[t] - (level_now + damped + (season[idx] if period else 0.0))
        level_now = level_now + damped + a * err
        trend_now = damped + gain_b * err
        level[t], trend[t] = level_now, trend_now
        if period:
            season[idx] += gain_s * err
            written[t] = season[idx]
    final = dataclasses.replace(
        state,
        level=level_now,
        trend=trend_now,
        season=np.asarray(season, dtype=np.float64),
        phase=n,
        residuals=np.empty(0),
    )
    return Trajectory(level, trend, written, p, period, final)


def extrapolate(state: Smoothed, horizon: int) -> FloatArray:
    """Mean forecast: level + damped trend sum + seasonal index per step."""
    k = np.arange(1, horizon + 1)
    damping = np.cumsum(state.phi**k)
    mean = state.level + damping * state.trend
    if state.season.size:
        mean = mean + state.season[(state.phase + k - 1) % state.season.size]
    return np.asarray(mean, dtype=np.float64)


def spread_growth(state: Smoothed, horizon: int) -> FloatArray:
    """How the one-step error spread widens with the horizon for this recursion.

    Var(e_k) / Var(e_1) = 1 + sum_{j<k} c_j^2, with c_j the weight a past error
    still carries j steps later (Hyndman et al., class 1 ETS models).
    """
    j = np.arange(1, horizon, dtype=np.float64)
    c = state.alpha * (1 + state.beta * np.cumsum(state.phi**j))
    if state.season.size:
        c = c + state.gamma * (1 - state.alpha) * (j % state.season.size == 0)
    return np.sqrt(np.concatenate(([1.0], 1.0 + np.cumsum(c**2))))


class SmoothingModel(HistoryModel):
    """A fitted `Smoothed` state answers predictions; subclasses choose window and grid."""

    state_: Smoothed
    """The chosen parameters, final state and one-step residuals."""
    period_: int
    """The season used, in steps (0 when there is none)."""
    window_size_: int
    """How many recent points are smoothed."""

    def _smooth(self, history: History, window: int, grid: Sequence[Sequence[float]]) -> None:
        self.window_size_ = min(window, history.filled.size)
        alphas, betas, gammas, phis = grid
        self.state_ = smooth(
            history.filled[-self.window_size_ :], self.period_, alphas, betas, gammas, phis
        )

    def _update(self, previous: History, history: History) -> None:
        added = newer_points(previous, history)
        if added is not None:
            self.state_ = advance(self.state_, history.filled[history.filled.size - added :])
        elif history.filled.size < 2 * max(self.period_, 2):
            self._fit(history)  # too short to keep the season: choose again
        else:
            s = self.state_
            self._smooth(history, self.window_size_, ((s.alpha,), (s.beta,), (s.gamma,), (s.phi,)))

    def _forecast(
        self, horizon: int, levels: tuple[float, ...]
    ) -> tuple[FloatArray, dict[float, FloatArray]]:
        growth = spread_growth(self.state_, horizon)
        offsets = residual_offsets(self.state_.residuals, levels, growth)
        return extrapolate(self.state_, horizon), offsets


class HoltWinters(SmoothingModel):
    """Additive Holt-Winters with a damped trend, on recent history.

    The season is the shortest significant period with at least `min_cycles`
    cycles in the history; the fit window holds `window_cycles` of them and at
    least `min_window` seconds (14 days: parameters chosen on two weeks beat those
    chosen on five days in the traces), or all of a shorter history. Without a usable
    season it is damped Holt.
    """

    name = "holt_winters"
    min_cycles: int
    window_cycles: int
    min_window: float

    def __init__(
        self,
        periods: Sequence[int] | None = None,
        mask_anomalies: bool = True,
        min_cycles: int = 3,
        window_cycles: int = 5,
        min_window: float = 14 * DAY,
    ) -> None:
        super().__init__(periods, mask_anomalies)
        self.min_cycles = min_cycles
        self.window_cycles = window_cycles
        self.min_window = min_window

    def _fit(self, history: History) -> None:
        n = history.filled.size
        usable = [p for p in history.periods if n >= self.min_cycles * p]
        period = usable[0] if usable else 0
        if n < 3:
            self._degrade(f"only {n} point(s) to smooth", Naive(history.periods))
            return
        if not period:
            self.fallback_ = "no season with enough cycles: damped trend only"
        self.period_ = period
        window = max(self.window_cycles * period, steps_in(self.min_window, history.step))
        self._smooth(history, window, (ALPHAS, BETAS, GAMMAS, PHIS))
