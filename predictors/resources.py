"""Resource prediction: how many replicas a forecast load needs.

Two forms:

* direct, `replicas_for`: ``ceil(load / target_per_replica)``, the HPA formula
  applied to a forecast instead of a current value;
* learned, `LearnedCapacity`: estimates what one replica can serve from a
  history of (load, ready replicas, utilisation), with a robust (Huber)
  regression, and says how far to trust the estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Self

import numpy as np
import numpy.typing as npt

from foreseer.predictors.series import FloatArray

_EPSILON = 1e-9
"""Relative slack before rounding up, so 10.000000001 replicas' worth of load stays 10."""


def replicas_for(load: float, target_per_replica: float) -> int | None:
    """``ceil(load / target_per_replica)``; None when the load is missing (NaN).

    A missing forecast is never read as zero load, which would scale to nothing;
    the caller decides what to do without it.
    """
    if not math.isfinite(target_per_replica) or target_per_replica <= 0:
        raise ValueError(f"target_per_replica must be a positive number, got {target_per_replica}")
    if math.isnan(load):
        return None
    if math.isinf(load):
        raise ValueError("load forecast is infinite; a metric or model is broken")
    if load < 0:
        raise ValueError(f"load forecast is negative ({load}); a load is never negative")
    return math.ceil(load / target_per_replica * (1 - _EPSILON))


@dataclass(frozen=True)
class CapacitySettings:
    """Bounds on what the learned capacity fit accepts."""

    min_samples: int = 30
    """Fewest usable (load, replicas, utilisation) rows before a fit is attempted."""
    full_confidence_samples: int = 500
    """Rows at which the sample size no longer limits confidence."""
    epsilon: float = 1.35
    """Huber's threshold, in robust standard deviations: rows beyond it count linearly,
    so a scrape glitch or a cold-start spike cannot drag the slope."""
    min_r2: float = 0.6
    """Least R² (on the inliers) of a trusted fit: below it utilisation is not explained
    by load per replica (another workload shares the pods, or the query is wrong)."""
    max_relative_error: float = 0.1
    """Largest standard error of the capacity, relative to it, of a trusted fit."""
    band: float = 4.0
    """Half-width of the confidence band, in robust noise units (MAD × 1.4826): a live
    (load per replica, utilisation) pair farther from the fitted line is off the band."""
    min_noise: float = 0.01
    """Floor of the noise, in utilisation: a near-perfect fit must not call every
    rounding wobble a drift."""
    saturation: float = 0.95
    """Utilisation at or above which a row is not fitted: a saturated replica queues or
    sheds what it cannot serve, so its utilisation stops growing with its load, and such
    rows would flatten the line and overstate the capacity."""


class LearnedCapacity:
    """Per-replica capacity learned from history: ``utilisation ≈ baseline + slope * load/replica``.

    ``fit(load, ready, utilisation)`` takes aligned arrays (utilisation as a fraction, 1.0 =
    fully busy); rows with a missing value, no ready replica or a saturated utilisation
    (``settings.saturation``) are skipped. Learned state: ``baseline_`` (utilisation at no
    load), ``slope_``, ``r2_`` (of the fit on its inliers), ``relative_error_`` (standard
    error of the capacity over the capacity), ``noise_`` (robust spread of the residuals),
    ``samples_``, ``confidence_`` in [0, 1], ``trusted_`` (the fit passes the settings' R²
    and error bounds) and ``fallback_`` (why there is no usable fit, or None).
    """

    def __init__(self, settings: CapacitySettings | None = None) -> None:
        self.settings = settings or CapacitySettings()

    def fit(self, load: npt.ArrayLike, ready: npt.ArrayLike, utilisation: npt.ArrayLike) -> Self:
        s = self.settings
        x, u = _usable_rows(load, ready, utilisation, s.saturation)
        self.samples_ = int(x.size)
        self.baseline_ = math.nan
        self.slope_ = math.nan
        self.r2_ = 0.0
        self.relative_error_ = math.inf
        self.confidence_ = 0.0
        self.noise_ = math.nan
        self.trusted_ = False
        self.fallback_: str | None = None
        if x.size < s.min_samples:
            self.fallback_ = f"{x.size} usable rows, need {s.min_samples}: use the direct form"
            return self
        if np.ptp(x) <= _EPSILON * max(1.0, float(np.max(np.abs(x)))):
            self.fallback_ = "load per replica never varied, so capacity cannot be separated"
            return self
        # Imported here: the decision engine imports this module for replicas_for, and
        # scikit-learn would add seconds and ~100 MB to every process that decides.
        from sklearn.linear_model import HuberRegressor

        huber = HuberRegressor(epsilon=s.epsilon).fit(x[:, None], u)
        self.baseline_ = float(huber.intercept_)
        self.slope_ = float(huber.coef_[0])
        if self.slope_ <= 0:
            self.fallback_ = (
                f"utilisation does not grow with load per replica (slope {self.slope_:.3g})"
            )
            return self
        inliers = ~huber.outliers_
        self.r2_ = _r_squared(x[inliers], u[inliers], self.baseline_, self.slope_)
        self.relative_error_ = _slope_relative_error(
            x[inliers], u[inliers], self.baseline_, self.slope_
        )
        residuals = u[inliers] - self.baseline_ - self.slope_ * x[inliers]
        self.noise_ = max(s.min_noise, 1.4826 * float(np.median(np.abs(
            residuals - np.median(residuals)))))
        size = min(1.0, x.size / s.full_confidence_samples)
        self.confidence_ = max(0.0, self.r2_) * size / (1.0 + self.relative_error_)
        self.trusted_ = self.r2_ >= s.min_r2 and self.relative_error_ <= s.max_relative_error
        return self

    def per_replica(self, target_utilisation: float) -> float:
        """Load one replica serves at ``target_utilisation`` (for example 0.7)."""
        if not 0.0 < target_utilisation <= 1.5:
            raise ValueError(f"target utilisation must be in (0, 1.5], got {target_utilisation}")
        if self.fallback_ is not None:
            raise ValueError(f"no learned capacity: {self.fallback_}")
        capacity = (target_utilisation - self.baseline_) / self.slope_
        if capacity <= 0:
            raise ValueError(
                f"target utilisation {target_utilisation} is below the idle baseline "
                f"{self.baseline_:.3f}: no load fits"
            )
        return capacity

    def replicas(self, load: float, target_utilisation: float) -> int | None:
        """Replicas that keep utilisation at the target under ``load`` (None if load is NaN)."""
        return replicas_for(load, self.per_replica(target_utilisation))


def _usable_rows(
    load: npt.ArrayLike, ready: npt.ArrayLike, utilisation: npt.ArrayLike, saturation: float
) -> tuple[FloatArray, FloatArray]:
    arrays = [np.asarray(a, dtype=np.float64) for a in (load, ready, utilisation)]
    if len({a.shape for a in arrays}) != 1 or arrays[0].ndim != 1:
        raise ValueError(
            "load, ready and utilisation must be one-dimensional arrays of the same length, "
            f"got shapes {[a.shape for a in arrays]}"
        )
    load_a, ready_a, util_a = arrays
    if np.isinf(arrays).any():
        raise ValueError(
            "load, ready and utilisation must not hold infinities; use NaN for missing"
        )
    if (np.nan_to_num(load_a) < 0).any() or (np.nan_to_num(util_a) < 0).any():
        raise ValueError("load and utilisation must not be negative")
    keep = (~np.isnan(load_a) & ~np.isnan(util_a) & (np.nan_to_num(ready_a) >= 1)
            & (np.nan_to_num(util_a) < saturation))
    return load_a[keep] / ready_a[keep], util_a[keep]


def _r_squared(x: FloatArray, u: FloatArray, intercept: float, slope: float) -> float:
    total = float(np.sum((u - u.mean()) ** 2))
    if total <= 0:
        return 0.0
    return 1.0 - float(np.sum((u - intercept - slope * x) ** 2)) / total


def _slope_relative_error(x: FloatArray, u: FloatArray, intercept: float, slope: float) -> float:
    """Standard error of the slope over the slope: capacity is 1/slope-proportional, so the
    relative errors of the two match to first order."""
    n = x.size
    spread = float(np.sum((x - x.mean()) ** 2))
    if n <= 2 or spread <= 0:
        return math.inf
    sigma2 = float(np.sum((u - intercept - slope * x) ** 2)) / (n - 2)
    return math.sqrt(sigma2 / spread) / slope
