"""`Series`: a load history on a regular time grid, where a missing point is NaN, never zero."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Aggregation = Literal["mean", "sum", "max"]


TUNED_STEP = 300.0
"""The step the models' windows and feature spans were tuned at (5 minutes)."""


def steps_in(seconds: float, step: float) -> int:
    """How many grid steps of ``step`` seconds a window or span of ``seconds`` holds:
    rounded, at least 1, and never fewer than at `TUNED_STEP`.

    Windows and feature spans are set in time, so that a model sees the same days (and
    the same seasonal cycles) at a 1-minute step as at a 5-minute one. At a coarser step
    they keep the 5-minute point counts instead: in time, a 30-minute trace's lags of 5 to
    60 minutes collapse to two and its 14-day window to 672 rows, and the forecast
    benchmark's boosted trees on nyc_taxi lost a third (MASE 0.31 to 0.42 one step ahead).
    """
    return max(1, round(seconds / min(step, TUNED_STEP)))


@dataclass(frozen=True)
class Series:
    """Values on a regular grid: point ``i`` is at ``start + i * step`` (unix seconds)."""

    start: float
    """Unix time of the first point, in seconds."""
    step: float
    """Grid spacing in seconds; always positive."""
    values: FloatArray
    """Float64 values; NaN marks a missing point (never zero)."""

    def __post_init__(self) -> None:
        if not np.isfinite(self.step) or self.step <= 0:
            raise ValueError(f"Series.step must be a positive number of seconds, got {self.step!r}")
        if not np.isfinite(self.start):
            raise ValueError(f"Series.start must be finite, got {self.start!r}")
        values = np.asarray(self.values, dtype=np.float64)
        if values.ndim != 1:
            raise ValueError(f"Series.values must be one-dimensional, got shape {values.shape}")
        object.__setattr__(self, "values", values)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def end(self) -> float:
        """Unix time just after the last point (``start + len * step``)."""
        return self.start + len(self) * self.step

    def times(self) -> FloatArray:
        """Unix times of every point."""
        return self.start + self.step * np.arange(len(self), dtype=np.float64)

    def observed(self) -> int:
        """How many points are present (not NaN)."""
        return int(np.count_nonzero(~np.isnan(self.values)))

    def tail(self, n: int) -> Series:
        """The last ``n`` points."""
        n = max(0, min(int(n), len(self)))
        return Series(self.end - n * self.step, self.step, self.values[len(self) - n :])

    def last(self, seconds: float) -> Series:
        """The points of the last ``seconds``, counted as `steps_in` counts them."""
        return self.tail(steps_in(seconds, self.step))

    def window(self, since: float, until: float) -> Series:
        """Points with ``since <= t < until``."""
        times = self.times()
        mask = (times >= since) & (times < until)
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            return Series(max(self.start, since), self.step, np.empty(0))
        return Series(float(times[idx[0]]), self.step, self.values[idx[0] : idx[-1] + 1])

    def resample(self, step: float, how: Aggregation = "mean") -> Series:
        """Aggregate onto a coarser grid of ``step`` seconds (a whole multiple of ``self.step``).

        A coarse bucket is NaN only when every fine point in it is NaN; ``sum``
        scales a partly-missing bucket up by the share observed, so a gap is
        not read as a drop in load.
        """
        ratio = step / self.step
        k = round(ratio)
        if k < 1 or abs(ratio - k) > 1e-9:
            raise ValueError(
                f"resample step {step}s must be a whole multiple of the series step {self.step}s"
            )
        if k == 1:
            return self
        n = len(self) // k
        if n == 0:
            return Series(self.start, float(step), np.empty(0))
        blocks = self.values[: n * k].reshape(n, k)
        present = (~np.isnan(blocks)).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            if how == "mean":
                agg = np.nansum(blocks, axis=1) / present
            elif how == "sum":
                agg = np.nansum(blocks, axis=1) * k / present
            elif how == "max":
                filled = np.where(np.isnan(blocks), -np.inf, blocks)
                agg = np.max(filled, axis=1)
            else:
                raise ValueError(f"unknown aggregation {how!r}; use mean, sum or max")
        agg = np.where(present > 0, agg, np.nan)
        return Series(self.start, float(step), agg.astype(np.float64))

    @classmethod
    def from_pairs(
        cls,
        timestamps: Iterable[float],
        values: Iterable[float],
        step: float | None = None,
        start: float | None = None,
        end: float | None = None,
    ) -> Series:
        """Build a grid from (timestamp, value) samples that may have gaps.

        Each sample goes to its nearest grid point (the last one wins); grid
        points with no sample are NaN. ``step`` defaults to the median spacing
        of the samples.
        """
        ts = np.asarray(list(timestamps), dtype=np.float64)
        vs = np.asarray(list(values), dtype=np.float64)
        if ts.shape != vs.shape:
            raise ValueError(f"{ts.size} timestamps but {vs.size} values")
        if ts.size and not np.all(np.isfinite(ts)):
            raise ValueError("timestamps must be finite numbers")
        order = np.argsort(ts, kind="stable")
        ts, vs = ts[order], vs[order]
        if step is None:
            diffs = np.diff(ts)
            diffs = diffs[diffs > 0]
            if diffs.size == 0:
                raise ValueError("cannot infer a step from fewer than two distinct timestamps")
            step = float(np.median(diffs))
        origin = float(start if start is not None else (ts[0] if ts.size else 0.0))
        last = float(end if end is not None else (ts[-1] + step / 2 if ts.size else origin))
        n = max(0, int(np.floor((last - origin) / step + 0.5)))
        if end is None and ts.size:
            n = int(np.rint((ts[-1] - origin) / step)) + 1
        grid = np.full(n, np.nan)
        idx = np.rint((ts - origin) / step).astype(np.int64)
        keep = (idx >= 0) & (idx < n)
        grid[idx[keep]] = vs[keep]
        return cls(origin, float(step), grid)
