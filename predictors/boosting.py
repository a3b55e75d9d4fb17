"""Gradient-boosted lag model: direct multi-horizon forecasts with quantile loss.

One scikit-learn `HistGradientBoostingRegressor` with quantile loss per
level (the median as the point forecast, and each level asked for at
construction), with the horizon as a feature, so one model covers every step
up to `horizon_` directly instead of feeding its own forecasts back (no
compounding error). The other levels learn the quantile of the median's
in-sample error: the spread alone is easier to learn than the level again,
and it balanced the q0.9 pinball loss across horizons in the traces.

* Target: the change y[t + h] - y[t] from the origin, divided by the recent
  mean load, so the trees learn shapes, not levels, and a load that moves to
  a level never seen in training is still forecast around where it is now.
* Features, all relative to y[t]: the Holt-Winters forecast for the same
  target (the trees learn its corrections), recent lags and rolling means, rolling
  spread, the value one season before the target and how the load moved over
  the same stretch one and several seasons ago (for the detected periods and
  for the hour and the day), and the target's time of day. Neither the absolute
  level nor the day of week: with two weeks of history the trees overfit them.
* Speed and size: training uses a bounded recent window and a random sample of
  (origin, horizon) pairs, few shallow trees on one thread, and the forecast
  path from the end of the history is computed once per fit or update, so
  `predict` only slices. The fitted trees are kept as `Trees` (numpy arrays),
  so a process that only moves models on and predicts never loads scikit-learn.

Anomalous points are left out as targets (their rows are dropped) and are
interpolated in the features.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from foreseer.predictors.ewma import EWMA
from foreseer.predictors.histories import History
from foreseer.predictors.holtwinters import (
    ALPHAS,
    BETAS,
    GAMMAS,
    PHIS,
    Smoothed,
    advance,
    extrapolate,
    newer_points,
    smooth,
    trajectory,
)
from foreseer.predictors.modelling import HistoryModel
from foreseer.predictors.periods import DAY, HOUR
from foreseer.predictors.series import FloatArray, steps_in
from foreseer.predictors.trees import Trees

if TYPE_CHECKING:
    from sklearn.ensemble import HistGradientBoostingRegressor
    from threadpoolctl import ThreadpoolController

IntArray = npt.NDArray[np.int64]
LAGS = (300.0, 600.0, 900.0, 1800.0, HOUR)
"""How far back the lagged changes look, in seconds: 5 to 60 minutes is one to twelve
steps at 5 minutes, the same minutes at a 1-minute step, and one to twelve steps at a
coarser one (see `steps_in`)."""
MEANS = (900.0, 1800.0, HOUR, 3 * HOUR, 12 * HOUR)
"""Spans of the trailing means, in seconds."""
SPREAD = HOUR
"""Span of the rolling spread, in seconds."""
SCALE = DAY
"""Span whose mean load scales the features and the target, in seconds."""
SMOOTHED_CYCLES = 5
"""Main seasons the Holt-Winters feature's parameters are chosen on."""
SMOOTHED_MIN = 3.5 * DAY
"""Fewest seconds they are chosen on (all of a shorter history; without a season, this)."""
ONE_STEP_SHARE = 0.3
"""Share of training rows forecasting one step ahead; the rest spread evenly over the
horizons. With even sampling the trees saw too few one-step rows and lost to plain
Holt-Winters at one step; this share won at 1 step and 15 minutes in the traces."""
CALENDAR = (HOUR, DAY)
"""Periods always offered as seasonal lags (when a whole number of steps that the history
holds twice), detected or not: an hourly job on a CPU trace was too weak for period
detection, yet the value an hour before the target halved the trees' error on it."""
SEASONS_BACK = 3
"""How many past seasons the seasonal-profile feature averages."""
RESIDUALS_PER_STEP = 200
"""In-sample residuals kept per horizon step (in single precision) for the levels without
trees of their own: the quantiles they give are calibrated afterwards anyway, and every
fitted model the operator holds carried 50-70 KB of them."""


def take(x: FloatArray, idx: IntArray) -> FloatArray:
    """x[idx], NaN where idx is before the start of the history."""
    out = np.full(idx.shape, np.nan)
    ok = idx >= 0
    out[ok] = x[idx[ok]]
    return out


def average(rows: list[FloatArray]) -> FloatArray:
    """Element-wise mean over the non-NaN rows; NaN where every row is NaN."""
    stacked = np.vstack(rows)
    count = np.sum(~np.isnan(stacked), axis=0)
    total = np.nansum(stacked, axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def spans(seconds: Sequence[float], step: float) -> tuple[int, ...]:
    """Each of ``seconds`` in steps (at least one), in order, each number of steps once."""
    return tuple(dict.fromkeys(steps_in(s, step) for s in seconds))


def features(
    x: FloatArray,
    origin: IntArray,
    h: IntArray,
    periods: Sequence[int],
    start: float,
    step: float,
    baseline: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """Feature rows for forecasting x[origin + h] from history up to x[origin], and their scale.

    Every feature that is a change in load is divided by the scale (the mean
    load over the last `SCALE` seconds), so trees learned at one load
    level apply at another; the target is scaled the same way. `baseline` is
    another model's forecast for each row, which the trees learn to correct.
    """
    csum = np.concatenate(([0.0], np.cumsum(x)))
    csum2 = np.concatenate(([0.0], np.cumsum(x * x)))

    def trailing_mean(w: int) -> FloatArray:
        lo = np.maximum(origin + 1 - w, 0)
        mean: FloatArray = (csum[origin + 1] - csum[lo]) / (origin + 1 - lo)
        return mean

    level = x[origin]
    floor = 1e-3 * float(np.mean(np.abs(x))) + 1e-9
    scale = np.maximum(trailing_mean(steps_in(SCALE, step)), floor)
    changes: list[FloatArray] = [baseline - level]
    # At a coarse step several spans round to the same number of steps: each counts once.
    changes += [take(x, origin - lag) - level for lag in spans(LAGS, step)]
    changes += [trailing_mean(w) - level for w in spans(MEANS, step)]
    spread = steps_in(SPREAD, step)
    lo = np.maximum(origin + 1 - spread, 0)
    spread2 = (csum2[origin + 1] - csum2[lo]) / (origin + 1 - lo) - trailing_mean(spread) ** 2
    changes.append(np.sqrt(np.maximum(spread2, 0.0)))
    for m in periods:
        back = m * ((h + m - 1) // m)  # one season before the target, never after the origin
        changes.append(take(x, origin + h - back) - level)
        changes.append(take(x, origin + h - back) - take(x, origin - back))
        at_target = average([take(x, origin + h - back - k * m) for k in range(SEASONS_BACK)])
        at_origin = average([take(x, origin - back - k * m) for k in range(SEASONS_BACK)])
        changes.append(at_target - at_origin)
    target_time = start + (origin + h) * step
    cols = [
        h.astype(np.float64),
        level / scale,
        *(c / scale for c in changes),
        np.mod(target_time, DAY) / 3600.0,
    ]
    return np.column_stack(cols), scale


def seasonal_lags(detected: Sequence[int], step: float, points: int) -> tuple[int, ...]:
    """The detected periods, then each calendar period not among them, that `points` hold twice."""
    lags = list(detected)
    for seconds in CALENDAR:
        period = round(seconds / step)
        whole = abs(seconds / step - period) < 1e-6 * period
        if period >= 2 and whole and all(abs(period - p) > max(1, p // 20) for p in lags):
            lags.append(period)
    return tuple(p for p in lags if points >= 2 * p)


@functools.cache
def fitting_threads() -> ThreadpoolController:
    """One controller of the OpenMP threads scikit-learn trains with, made once.

    The trees are small, and on a busy two-core node OpenMP's spinning worker threads
    made a fit ten times slower than one thread. Made after scikit-learn is loaded (a
    controller sees the libraries loaded when it is built), once: building one scans
    them (~15 ms).
    """
    import sklearn.ensemble  # noqa: F401 - loads the OpenMP runtime the controller must see
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def trained_horizon(step: float) -> int:
    """Steps in an hour, at least 12 and at most 120: the autoscaling horizons that matter."""
    return int(np.clip(np.ceil(HOUR / step), 12, 120))


class Boosting(HistoryModel):
    """Direct multi-horizon gradient boosting on lag, seasonal and calendar features.

    `max_horizon` is the longest horizon trained, in steps (None: an hour, see
    `trained_horizon`). `quantiles` are the levels trained with quantile loss (others are served
    from the point model's in-sample residual spread). The point forecast is
    the median model: autoscaling errors are judged in absolute terms (MAE,
    MASE), and on bursty loads the median beat the squared-error mean. The
    training origins are drawn from the last `window` seconds. Below `min_points`
    observed points (a count of training examples, so not in time) it falls back to
    EWMA with drift.
    """

    name = "boosting"
    quantiles: tuple[float, ...]
    max_horizon: int | None
    window: float
    rows: int
    max_iter: int
    min_points: int
    random_state: int
    periods_: tuple[int, ...]
    """The seasonal periods used as features."""
    smoother_: Smoothed
    """Holt-Winters parameters whose forecast from every origin is a feature."""
    state_: Smoothed
    """That Holt-Winters recursion's state at the end of the history."""
    regressors_: dict[float, Trees]
    """The fitted trees per quantile level: 0.5 is the point forecast, and every other
    level's trees learn the quantile of that forecast's error (not of the load itself).
    Kept as `Trees`, not as scikit-learn regressors: a sixth of the memory, and
    predicting needs numpy only."""
    path_: dict[float, FloatArray]
    """Forecast from the end of the history for steps 1..horizon_, per level."""
    horizon_: int
    """The longest horizon trained, in steps."""
    residuals_: npt.NDArray[np.float32]
    """In-sample residuals of the point model, one row of up to
    `RESIDUALS_PER_STEP` samples per horizon step."""

    def __init__(
        self,
        quantiles: Sequence[float] = (0.5, 0.9),
        periods: Sequence[int] | None = None,
        mask_anomalies: bool = True,
        max_horizon: int | None = None,
        window: float = 14 * DAY,
        rows: int = 12000,
        max_iter: int = 60,
        min_points: int = 96,
        random_state: int = 0,
    ) -> None:
        super().__init__(periods, mask_anomalies)
        self.quantiles = tuple(float(q) for q in quantiles)
        self.max_horizon = max_horizon
        self.window = window
        self.rows = rows
        self.max_iter = max_iter
        self.min_points = min_points
        self.random_state = random_state

    def _regressor(self, quantile: float) -> HistGradientBoostingRegressor:
        # Imported here: a process that only predicts (the operator) never loads scikit-learn.
        from sklearn.ensemble import HistGradientBoostingRegressor

        common = {
            "max_iter": self.max_iter,
            "learning_rate": 0.1,
            "max_leaf_nodes": 15,
            # A tail quantile is estimated from a tenth of a leaf's rows: bigger leaves steady it.
            "min_samples_leaf": 40 if quantile == 0.5 else 300,
            "l2_regularization": 1.0,
            "early_stopping": False,
            "random_state": self.random_state,
        }
        return HistGradientBoostingRegressor(loss="quantile", quantile=quantile, **common)

    def _features(
        self, history: History, origin: IntArray, h: IntArray, baseline: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        x = history.filled
        return features(x, origin, h, self.periods_, history.start, history.step, baseline)

    def _fit(self, history: History) -> None:
        n = history.filled.size
        if history.observed < self.min_points:
            self._degrade(
                f"{history.observed} observed points, fewer than {self.min_points}",
                EWMA(history.periods),
            )
            return
        self.horizon_ = self.max_horizon or trained_horizon(history.step)
        self.periods_ = seasonal_lags(history.periods, history.step, n)
        season = next((p for p in history.periods if n >= 3 * p), 0)
        smoothed = max(SMOOTHED_CYCLES * season, steps_in(SMOOTHED_MIN, history.step))
        self.smoother_ = smooth(history.filled[-smoothed:], season, ALPHAS, BETAS, GAMMAS, PHIS)
        rng = np.random.default_rng(self.random_state)
        first = max(0, n - steps_in(self.window, history.step))
        origin = rng.integers(first, n - 1, size=self.rows)
        h = rng.integers(1, self.horizon_ + 1, size=self.rows)
        h[rng.random(self.rows) < ONE_STEP_SHARE] = 1
        keep = origin + h < n
        origin, h = origin[keep], h[keep]
        keep = ~np.isnan(history.clean[origin + h])
        origin, h = origin[keep], h[keep]
        path = trajectory(history.filled, self.smoother_)
        self.state_ = path.final
        x, scale = self._features(history, origin, h, path.forecast(origin, h))
        target = (history.clean[origin + h] - history.filled[origin]) / scale
        with fitting_threads().limit(limits=1, user_api="openmp"):
            point = self._regressor(0.5).fit(x, target)
            fitted = point.predict(x)
            self.regressors_ = {0.5: Trees.of(point)}
            for level in sorted(set(self.quantiles) - {0.5}):
                self.regressors_[level] = Trees.of(self._regressor(level).fit(x, target - fitted))
        residuals = (target - fitted) * scale
        per_step = [residuals[h == k] for k in range(1, self.horizon_ + 1)]
        # The training rows are in random order, so the first ones are a random sample.
        kept = min(RESIDUALS_PER_STEP, *(r.size for r in per_step))
        self.residuals_ = (
            np.vstack([r[:kept] for r in per_step]).astype(np.float32)
            if kept
            else np.zeros((self.horizon_, 1), dtype=np.float32)
        )
        self._update(history, history)

    def _update(self, previous: History, history: History) -> None:
        added = newer_points(previous, history)
        if added is None:
            self.state_ = trajectory(history.filled, self.smoother_).final
        else:
            self.state_ = advance(self.state_, history.filled[history.filled.size - added :])
        last = history.filled.size - 1
        h = np.arange(1, self.horizon_ + 1, dtype=np.int64)
        baseline = extrapolate(self.state_, self.horizon_)
        x, scale = self._features(history, np.full(h.size, last, dtype=np.int64), h, baseline)
        level = history.filled[last]
        median = level + self.regressors_[0.5].predict(x) * scale
        self.path_ = {
            q: median + (r.predict(x) * scale if q != 0.5 else 0.0)
            for q, r in self.regressors_.items()
        }

    def _forecast(
        self, horizon: int, levels: tuple[float, ...]
    ) -> tuple[FloatArray, dict[float, FloatArray]]:
        # Past the trained horizon the last trained step is held, its spread widened like a
        # random walk: the direct models know nothing further out.
        k = np.arange(1, horizon + 1)
        idx = np.minimum(k, self.horizon_) - 1
        widen = np.sqrt(np.maximum(k / self.horizon_, 1.0))
        mean = self.path_[0.5][idx]
        offsets: dict[float, FloatArray] = {}
        for q in levels:
            trained = next((t for t in self.regressors_ if abs(t - q) < 1e-9), None)
            if trained is not None:
                offsets[q] = (self.path_[trained][idx] - mean) * widen
            else:
                spread = np.quantile(self.residuals_, q, axis=1)
                offsets[q] = spread[idx] * widen
        return mean, offsets
