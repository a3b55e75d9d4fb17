"""Scores of a run (under-provisioning, unserved load, cost, actions, recovery) and the oracle."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
from scipy.ndimage import maximum_filter1d, median_filter

from foreseer.predictors.series import FloatArray

STEP_RISE = 1.3
"""A step change is a level that rises by at least this factor..."""
STEP_MIN_REPLICAS = 2.0
"""...and by at least this many replicas' capacity, so noise on a tiny load is not a step."""
STEP_WINDOW = 3600.0
"""Seconds of level compared before and after a step (the median over each side)."""
RECOVERY_CAP = 6 * 3600.0
"""A policy that has not recovered this long after a step is scored as this long."""


@dataclass(frozen=True)
class Score:
    """How one policy did on one trace."""

    underprov_time: float
    """Fraction of time the load was above ready capacity."""
    unserved_load: float
    """Fraction of the load that was above ready capacity."""
    replica_hours: float
    """Integral of the replica count (starting replicas cost too)."""
    replica_hours_vs_oracle: float
    """replica_hours divided by the oracle's."""
    actions: int
    """How many times the replica count changed."""
    recovery_seconds: float | None
    """Mean time from a step-up in load until ready capacity reached the new level;
    None when the trace has no step change."""

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def oracle_replicas(
    load: FloatArray, capacity: float, startup: float, grid_step: float,
    min_replicas: int, max_replicas: int,
) -> tuple[FloatArray, FloatArray]:
    """(ready, paid) replicas of perfect foresight on the evaluation grid.

    It needs ``ceil(load / capacity)`` ready at every instant and, knowing the
    startup delay, starts each replica exactly that long before it is needed;
    keeping one through a dip shorter than the startup never costs more than
    restarting it, so it pays for the most it will need within one startup.
    """
    need = np.clip(np.ceil(load / capacity - 1e-9), min_replicas, max_replicas)
    ahead = math.ceil(startup / grid_step)
    # maximum_filter1d centred at `origin`; shift so each window is [t, t + ahead].
    paid = maximum_filter1d(need, size=ahead + 1, origin=-(ahead // 2) - (ahead % 2),
                            mode="nearest")
    return need, paid


def step_changes(load: FloatArray, grid_step: float, capacity: float) -> list[tuple[int, float]]:
    """(grid index, new level) of every step-up in ``load``, at least one window apart."""
    window = max(3, round(STEP_WINDOW / grid_step))
    if load.size < 2 * window + 1:
        return []
    level = median_filter(load, size=window, mode="nearest")
    # The level of the window before i and of the window from i on.
    before = np.roll(level, window // 2 + 1)
    after = np.roll(level, -(window // 2))
    rise = (after >= STEP_RISE * before) & (after - before >= STEP_MIN_REPLICAS * capacity)
    rise[: window] = False
    rise[-window:] = False
    events: list[tuple[int, float]] = []
    candidates = np.flatnonzero(rise)
    # Each run of consecutive candidates is one step; it happens where the load first
    # crosses halfway between the two levels.
    for run in np.split(candidates, np.flatnonzero(np.diff(candidates) > 1) + 1):
        if run.size == 0:
            continue
        first = int(run[0])
        low, high = float(before[first]), float(after[first])
        crossing = np.flatnonzero(load[first : int(run[-1]) + 1] >= (low + high) / 2)
        at = first + int(crossing[0]) if crossing.size else first
        if not events or at - events[-1][0] >= window:
            events.append((at, high))
    return events


def recovery_seconds(
    events: list[tuple[int, float]], ready_capacity: FloatArray, grid_step: float
) -> float | None:
    """Mean seconds from each step until ready capacity first reaches the new level."""
    if not events:
        return None
    cap = int(RECOVERY_CAP / grid_step)
    waits = []
    for index, level in events:
        covered = np.flatnonzero(ready_capacity[index : index + cap] >= level - 1e-9)
        waits.append(float(covered[0]) * grid_step if covered.size else RECOVERY_CAP)
    return float(np.mean(waits))


def under_provisioned(load: FloatArray, ready: FloatArray,
                      capacity: float) -> npt.NDArray[np.bool_]:
    """Where the load is above the ready capacity (by more than rounding)."""
    return np.asarray(load - ready * capacity > 1e-9 * capacity)


def score(
    load: FloatArray, ready: FloatArray, paid: FloatArray, actions: int, capacity: float,
    grid_step: float, oracle_hours: float, events: list[tuple[int, float]],
) -> Score:
    """Score one policy from its ready and paid replicas on the evaluation grid."""
    ready_capacity = ready * capacity
    short = np.clip(load - ready_capacity, 0.0, None)
    total = float(load.sum())
    hours = float(paid.sum()) * grid_step / 3600.0
    return Score(
        underprov_time=float(np.mean(under_provisioned(load, ready, capacity))),
        unserved_load=float(short.sum() / total) if total > 0 else 0.0,
        replica_hours=hours,
        replica_hours_vs_oracle=hours / oracle_hours if oracle_hours > 0 else math.nan,
        actions=int(actions),
        recovery_seconds=recovery_seconds(events, ready_capacity, grid_step),
    )
