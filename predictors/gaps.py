"""Gaps in a load history: NaN marks a missing point, and these fill or skip it."""

from __future__ import annotations

import numpy as np

from foreseer.predictors.series import FloatArray


def interpolate_gaps(values: FloatArray) -> FloatArray:
    """Fill NaN linearly between observed neighbours; ends take the nearest observed value.

    An all-NaN input stays all NaN.
    """
    missing = np.isnan(values)
    if not missing.any() or missing.all():
        return values.copy()
    idx = np.arange(values.size)
    return np.interp(idx, idx[~missing], values[~missing])


def last_observed(values: FloatArray) -> float:
    """The most recent non-NaN value (values must hold at least one)."""
    return float(values[np.flatnonzero(~np.isnan(values))[-1]])
