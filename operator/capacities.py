"""Learned per-replica capacity on the policy tick: fitting, trust, and drift. Pure.

`learn` fits `LearnedCapacity` on aligned load, ready-replica and utilisation histories
and gives the `CapacityStatus` the decision sizes with; `watch` follows the live
(load, replicas, utilisation) of each interval and says when the fit no longer holds:
DRIFT_INTERVALS pairs in a row off its confidence band (a release that made requests
costlier, a node type change). The handler and the simulator both call these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from foreseer.operator.statuses import CapacityStatus, to_time
from foreseer.predictors.resources import CapacitySettings, LearnedCapacity
from foreseer.predictors.series import FloatArray, Series

DRIFT_INTERVALS = 3
"""Consecutive intervals off the band that count as a changed capacity: one or two are a
spike or a slow scrape; three at a 30 s interval is 90 s of a different workload."""


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def learn(metric: str, load: FloatArray, replicas: FloatArray, utilisation: FloatArray,
          target: float, now: float, since: float | None = None) -> CapacityStatus:
    """The capacity one replica has at ``target`` utilisation, learned from aligned histories
    (NaN where missing; ``since`` is recorded, the caller has cut the histories at it), with
    its confidence; untrusted, saying why, when it cannot be."""
    fit = LearnedCapacity().fit(load, replicas, utilisation)
    per_replica, reason = None, fit.fallback_ or ""
    if fit.fallback_ is None:
        try:
            per_replica = fit.per_replica(target)
        except ValueError as exc:
            reason = str(exc)
    if per_replica is not None and not fit.trusted_:
        s = fit.settings
        reason = (f"fit too loose: R² {fit.r2_:.2f} (need {s.min_r2}), slope relative error "
                  f"{fit.relative_error_:.2f} (need at most {s.max_relative_error})")
    has_fit = fit.fallback_ is None
    return CapacityStatus(
        metric=metric, per_replica=_finite(per_replica),
        target=target,
        baseline=_finite(fit.baseline_) if has_fit else None,
        slope=_finite(fit.slope_) if has_fit else None,
        noise=_finite(fit.noise_) if has_fit else None,
        r2=_finite(fit.r2_) if has_fit else None,
        slope_relative_error=_finite(fit.relative_error_) if has_fit else None,
        samples=fit.samples_, fitted_at=to_time(now),
        trusted=per_replica is not None and fit.trusted_, reason=reason,
        since=None if since is None else to_time(since))


def off_band(capacity: CapacityStatus, load: float, replicas: float, utilisation: float,
             band: float = CapacitySettings.band,
             saturation: float = CapacitySettings.saturation) -> bool | None:
    """Whether a live pair lies off the fitted line by more than ``band`` noise units; None
    when the pair or the fit is unusable (a missing value, no ready replica), or when a
    saturated replica's utilisation says only that the line is at least this high."""
    if capacity.baseline is None or capacity.slope is None or capacity.noise is None:
        return None
    if not all(math.isfinite(v) for v in (load, replicas, utilisation)) or replicas < 1:
        return None
    expected = capacity.baseline + capacity.slope * load / replicas
    above = utilisation - expected > band * capacity.noise
    if utilisation >= saturation:
        # An overloaded replica reads as saturated, below the line: that is no drift.
        return True if above else None
    return above or expected - utilisation > band * capacity.noise


def watch(capacity: CapacityStatus, load: float, replicas: float,
          utilisation: float) -> tuple[CapacityStatus, bool]:
    """The capacity with this interval's pair counted, and whether it drifted (the streak
    reached DRIFT_INTERVALS: refit now). A pair that cannot be judged keeps the streak."""
    off = off_band(capacity, load, replicas, utilisation)
    if off is None:
        return capacity, False
    streak = capacity.drift_streak + 1 if off else 0
    return capacity.model_copy(update={"drift_streak": streak}), streak >= DRIFT_INTERVALS


RELEARN_SECONDS = 300.0
"""How often an untrusted capacity (too little history, or relearning after a drift) is
fitted again: new rows come at one per step, and a fit is not free."""


@dataclass(frozen=True)
class Watched:
    """One interval of a metric's capacity: what it is now, and what to do."""

    capacity: CapacityStatus | None
    """The capacity with this interval's live pair counted (None before any fit)."""
    refit: str | None
    """Why a fit is due now, or None."""
    since: float | None
    """Fit only history from this time on (after a drift); None: the whole window."""
    changed: tuple[float, float | None] | None = None
    """Set in the interval a drift is detected: the old per-replica capacity and the one
    the live pair implies (None when it implies none)."""


def live_capacity(capacity: CapacityStatus, load: float, replicas: float,
                  utilisation: float) -> float | None:
    """The capacity at the target that one live pair implies, keeping the fitted idle
    baseline: what the drift message reports before a refit can tell."""
    if capacity.baseline is None or replicas < 1 or load <= 0:
        return None
    busy = utilisation - capacity.baseline
    if not math.isfinite(busy) or busy <= 0 or capacity.target <= capacity.baseline:
        return None
    return (capacity.target - capacity.baseline) * (load / replicas) / busy


def capacity_step(capacity: CapacityStatus | None, load: float, replicas: float,
                  utilisation: float, now: float, retrain_seconds: float,
                  interval_seconds: float) -> Watched:
    """Count this interval's live (load, ready replicas, utilisation) against the learned
    capacity, and say whether to fit: none yet, the retrain interval passed, a drift (fit
    at once, on the history since the streak began), or relearning after one."""
    if capacity is None:
        return Watched(None, "no capacity learned yet", None)
    old = capacity.per_replica
    counted, drifted = watch(capacity, load, replicas, utilisation)
    since = None if counted.since is None else counted.since.timestamp()
    if drifted and counted.trusted and old is not None:
        start = now - DRIFT_INTERVALS * interval_seconds
        why = f"live utilisation left the fit's band for {counted.drift_streak} intervals"
        # Untrusted at once, so the fallback sizes even if the refit cannot run this time.
        distrusted = counted.model_copy(update={
            "trusted": False, "reason": f"drifted: {why}", "since": to_time(start)})
        return Watched(distrusted, why, start,
                       (old, live_capacity(counted, load, replicas, utilisation)))
    age = now - counted.fitted_at.timestamp()
    if age >= retrain_seconds:
        return Watched(counted, "the retrain interval passed", since)
    if not counted.trusted and age >= RELEARN_SECONDS:
        return Watched(counted, "the capacity is not trusted yet", since)
    return Watched(counted, None, since)


def fit_capacity(metric: str, load: Series, replicas: Series, utilisation: Series,
                 target: float, now: float, since: float | None) -> CapacityStatus:
    """`learn` on three histories that end at the same time (a read may be shorter than
    another after an outage: their common tail), from ``since`` on when it is set."""
    n = min(len(load), len(replicas), len(utilisation))
    arrays = [np.asarray(s.values[len(s) - n:], dtype=np.float64)
              for s in (load, replicas, utilisation)]
    if since is not None:
        recent = load.times()[len(load) - n:] >= since
        arrays = [a[recent] for a in arrays]
    load_a, replicas_a, utilisation_a = arrays
    return learn(metric, load_a, replicas_a, utilisation_a, target, now, since)
