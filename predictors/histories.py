"""`History`: a load series checked and prepared once for every model family.

Checking happens here so that every forecaster rejects bad input with the same
clear `ValueError` instead of failing somewhere deep inside numpy: a load is a
count or a rate, so infinities and negative values mean a broken metric, while
NaN means a missing point and is tolerated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from foreseer.predictors.anomalies import flag_anomalies
from foreseer.predictors.gaps import interpolate_gaps
from foreseer.predictors.periods import detect_periods
from foreseer.predictors.series import FloatArray, Series

BoolArray = npt.NDArray[np.bool_]
UNJUDGED_TAIL = 3
"""The newest points a history never flags (`flag_anomalies`' max_run), re-judged later."""
CONTEXT = 288
"""Points of context for judging new points when the series has no season: a sample of
the ordinary spread the robust z-score needs, so a count, not a span."""


def checked_values(series: Series) -> FloatArray:
    """The series values, or a ValueError naming the first problem found."""
    values = np.asarray(series.values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("cannot fit a forecaster on an empty series")
    infinite = np.flatnonzero(np.isinf(values))
    if infinite.size:
        raise ValueError(
            f"series has {infinite.size} infinite value(s), first at index {infinite[0]}; "
            "mark a missing point as NaN"
        )
    negative = np.flatnonzero(values < 0)
    if negative.size:
        first = negative[0]
        raise ValueError(
            f"series has {negative.size} negative value(s), first {float(values[first]):g} at "
            f"index {first}; a load is never negative"
        )
    if np.isnan(values).all():
        raise ValueError("series has no observed values (all points are NaN)")
    return values


@dataclass(frozen=True)
class History:
    """A checked series with anomalies masked, gaps filled and periods detected."""

    start: float
    """Unix time of the first point."""
    step: float
    """Seconds between points."""
    raw: FloatArray
    """Values as given (NaN = missing)."""
    clean: FloatArray
    """`raw` with anomalies masked as NaN: what models learn from."""
    filled: FloatArray
    """`clean` with every NaN interpolated, for models that need a complete grid."""
    anomalies: BoolArray
    """True where a point was flagged as an anomaly."""
    periods: tuple[int, ...]
    """Significant seasonal periods in steps, strongest first (may be empty)."""

    @property
    def end(self) -> float:
        """Unix time just after the last point: where a forecast starts."""
        return self.start + self.raw.size * self.step

    @property
    def observed(self) -> int:
        """How many points are present and not anomalous."""
        return int(np.count_nonzero(~np.isnan(self.clean)))


def extend(previous: History, series: Series, mask_anomalies: bool = True) -> History:
    """`series` prepared with the periods and anomaly flags already found on `previous`.

    Points that `previous` covered keep their flags. Only the newer points
    (and the few newest of `previous`, which it could not judge yet) are
    checked for anomalies, against a recent stretch of two main seasons, so
    moving a model's origin on costs little more than the new points.
    """
    raw = checked_values(series)
    n = raw.size
    flags = np.zeros(n, dtype=bool)
    known = 0
    if series.step == previous.step:
        offset = round((series.start - previous.start) / series.step)
        lo, hi = max(0, -offset), min(n, previous.raw.size - offset)
        if hi > lo:
            flags[lo:hi] = previous.anomalies[lo + offset : hi + offset]
            known = max(0, hi - UNJUDGED_TAIL)
    if mask_anomalies and known < n:
        context = 2 * previous.periods[0] if previous.periods else CONTEXT
        stretch = raw[max(0, known - context) :]
        flags[known:] = flag_anomalies(stretch, previous.periods)[stretch.size - (n - known) :]
    return _masked(series, raw, flags, previous.periods)


def prepare(
    series: Series,
    periods: tuple[int, ...] | None = None,
    mask_anomalies: bool = True,
) -> History:
    """Check `series`, detect its periods (unless given) and mask its anomalies."""
    raw = checked_values(series)
    found = detect_periods(raw, series.step) if periods is None else tuple(periods)
    flags = flag_anomalies(raw, found) if mask_anomalies else np.zeros(raw.size, dtype=bool)
    return _masked(series, raw, flags, found)


def _masked(
    series: Series, raw: FloatArray, flags: BoolArray, periods: tuple[int, ...]
) -> History:
    """The History of `raw` with the flagged points masked out and the gaps filled."""
    clean = np.where(flags, np.nan, raw)
    return History(
        start=series.start,
        step=series.step,
        raw=raw,
        clean=clean,
        filled=interpolate_gaps(clean),
        anomalies=flags,
        periods=periods,
    )
