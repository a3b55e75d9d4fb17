"""Anomaly flags on a load history: short spikes and drops that no model should learn.

A point is anomalous when its residual is far outside the robust spread of all
residuals (robust z-score). The residual is taken against a baseline that
already explains the normal shape of the load:

* a short centred rolling median follows the level, so a level shift is not an
  anomaly, but a spike of a few points stands out of it;
* the typical residual at the same phase of the main season is subtracted, so
  a spike that recurs every day (a nightly cron) is a season, not an anomaly,
  while a one-off spike is not learned as a season.

Only runs of at most `max_run` points are flagged: longer excursions are
regime changes the models must follow. The last `max_run` points are never
flagged, because a new spike and the start of a new level look the same until
the load comes back down.
"""

from __future__ import annotations

# bottleneck's C rolling median: scipy.ndimage's equal one costs the operator, which flags
# every new point, about 28 MB of imports; bottleneck costs under 1 MB.
import bottleneck
import numpy as np
import numpy.typing as npt

from foreseer.predictors.gaps import interpolate_gaps
from foreseer.predictors.periods import robust_scale
from foreseer.predictors.series import FloatArray

BoolArray = npt.NDArray[np.bool_]


def seasonal_typical(residuals: FloatArray, period: int) -> FloatArray:
    """The median residual at each point's phase of `period` (NaN residuals are skipped)."""
    n = residuals.size
    cycles = -(-n // period)
    padded = np.full(cycles * period, np.nan)
    padded[:n] = residuals
    # A NaN-aware median by sorting (NaN sorts last): np.nanmedian is many times slower here.
    ordered = np.sort(padded.reshape(cycles, period), axis=0)
    count = np.sum(~np.isnan(ordered), axis=0)
    lower = np.take_along_axis(ordered, np.maximum((count - 1) // 2, 0)[None, :], axis=0)[0]
    upper = np.take_along_axis(ordered, np.maximum(count // 2, 0)[None, :], axis=0)[0]
    typical = np.where(count > 0, (lower + upper) / 2, 0.0)
    return np.tile(typical, cycles)[:n]


def centred_median(x: FloatArray, window: int) -> FloatArray:
    """The median of the `window` points centred on each point (an odd `window`); the
    edges repeat the first and last values."""
    half = window // 2
    padded = np.pad(x, half, mode="edge")
    median: FloatArray = bottleneck.move_median(padded, window)[window - 1 :]
    return median


def short_runs(flags: BoolArray, max_run: int) -> BoolArray:
    """Keep only the runs of True that are at most `max_run` long."""
    edges = np.diff(np.concatenate(([0], flags.astype(np.int8), [0])))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    out = np.zeros_like(flags)
    for a, b in zip(starts, stops, strict=True):
        if b - a <= max_run:
            out[a:b] = True
    return out


def flag_anomalies(
    values: FloatArray,
    periods: tuple[int, ...] = (),
    threshold: float = 6.0,
    window: int = 7,
    max_run: int = 3,
    min_points: int = 24,
    max_share: float = 0.01,
) -> BoolArray:
    """True where a point is a spike or drop against its seasonal, rolling baseline."""
    n = values.size
    present = ~np.isnan(values)
    if int(present.sum()) < min_points:
        return np.zeros(n, dtype=bool)
    x = interpolate_gaps(values)
    residuals = x - centred_median(x, window)
    residuals[~present] = np.nan
    if periods and n >= 2 * periods[0]:
        residuals = residuals - seasonal_typical(residuals, periods[0])
    spread = np.abs(residuals[present])
    # The MAD alone is tiny for smooth or mostly-flat loads, which would flag every ordinary
    # wiggle; the 90th percentile keeps the bar at the spread of the usual movement.
    scale = max(robust_scale(residuals[present]), float(np.quantile(spread, 0.9)) / 1.645)
    if not scale > 0:
        return np.zeros(n, dtype=bool)
    with np.errstate(invalid="ignore"):
        outlying = present & (np.abs(residuals) > threshold * scale)
    flags = short_runs(outlying, max_run)
    flags[max(0, n - max_run) :] = False
    budget = int(max_share * n)
    if int(flags.sum()) > budget:
        # Anomalies are rare by definition: past the budget keep only the most extreme.
        score = np.where(flags, np.abs(np.nan_to_num(residuals)), -1.0)
        keep = np.argsort(score)[::-1][:budget]
        flags = np.zeros(n, dtype=bool)
        flags[keep] = True
    return flags
