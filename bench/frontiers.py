"""Where foreseer lies against the HPA's own cost/safety frontier (pure functions).

The HPA has a knob of its own, its target fraction: lowered, it buys fewer shortfalls
with more replica-hours. A sweep over it gives one point (replica-hours, under-provisioned
time) per fraction. The points are joined piecewise-linearly in the order of the
fraction, as a user turning the knob moves along them, and read through the lower
envelope of that path: at a spend, the least under-provisioned time any part of the
path reaches for no more spend, and conversely. Sweep noise that makes the path
non-monotone therefore never credits foreseer, since a setting beaten by a cheaper one
is not the HPA's best. (A lower convex hull would go further and credit the HPA with
chords between settings the sweep measured it not to reach.)

Outside the swept range nothing is extrapolated: the value is taken at the range's end
and flagged as a bound (``at_least`` or ``at_most``) of the number it stands for.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

Point = tuple[float, float]
TARGETS = {
    "median_underprov_ratio_at_equal_cost": ("<=", 0.5),
    "worst_underprov_ratio_at_equal_cost": ("<=", 1.0),
    "median_replica_hours_saved_at_equal_underprov": (">=", 0.25),
}
EXACT, AT_LEAST, AT_MOST = "exact", "at_least", "at_most"
BOTH, HOURS_ONLY = "underprov_and_replica_hours", "replica_hours_only"


@dataclass(frozen=True)
class Setting:
    """One point of a sweep: a knob's value and what the policy scored with it."""

    knob: float
    """The HPA's target fraction, or foreseer's forecast quantile."""
    replica_hours: float
    underprov_time: float

    def to_dict(self, knob: str) -> dict[str, float]:
        return {knob: self.knob, "replica_hours": self.replica_hours,
                "underprov_time": self.underprov_time}


def envelope(path: Sequence[Point], x: float) -> float | None:
    """The least y on the piecewise-linear ``path`` where its x is at most ``x``;
    None when the whole path lies beyond ``x``."""
    found = [y for px, y in path if px <= x]
    for (x0, y0), (x1, y1) in pairwise(path):
        if min(x0, x1) < x < max(x0, x1):
            found.append(y0 + (y1 - y0) * (x - x0) / (x1 - x0))
    return min(found) if found else None


def frontier_point(curve: Sequence[Setting], replica_hours: float, underprov_time: float
                   ) -> dict[str, Any]:
    """foreseer's point (``replica_hours``, ``underprov_time``) against the HPA ``curve``:
    the HPA's under-provisioned time at equal spend and foreseer's over it, the HPA's
    replica-hours at equal under-provisioned time and the share foreseer saves, each
    with whether it is exact or a bound, and notes saying why a number is missing."""
    ordered = sorted(curve, key=lambda s: s.knob)
    cost_path = [(s.replica_hours, s.underprov_time) for s in ordered]
    safety_path = [(s.underprov_time, s.replica_hours) for s in ordered]
    notes: list[str] = []
    never_short = underprov_time == 0 and all(s.underprov_time == 0 for s in ordered)

    hpa_short = envelope(cost_path, replica_hours)
    cost_bound = AT_LEAST if ordered[0].replica_hours <= replica_hours else EXACT
    if hpa_short is None:
        # foreseer spends less than the cheapest setting: beyond it the HPA would be
        # cheaper still and no safer, so the ratio over the cheapest can only fall.
        cheapest = min(ordered, key=lambda s: s.replica_hours)
        hpa_short, cost_bound = cheapest.underprov_time, AT_MOST
        notes.append(f"foreseer spends less than the cheapest swept HPA (fraction "
                     f"{cheapest.knob}): the ratio is at most the value given")
    elif cost_bound == AT_LEAST:
        notes.append(f"foreseer spends at least as much as the HPA at its lowest swept "
                     f"fraction {ordered[0].knob}: the ratio is at least the value given")
    ratio: float | None
    if never_short:
        ratio = None
        notes.append("no policy is ever under-provisioned: replica-hours only")
    elif hpa_short > 0:
        ratio = underprov_time / hpa_short
    elif underprov_time == 0:
        ratio = 1.0
        notes.append("neither foreseer nor the HPA curve is under-provisioned at this spend")
    else:
        ratio = None
        notes.append("the HPA curve is never under-provisioned at this spend and foreseer is: "
                     "the ratio is infinite")

    hpa_hours = envelope(safety_path, underprov_time)
    hours_bound = AT_MOST if ordered[-1].underprov_time <= underprov_time else EXACT
    if hpa_hours is None:
        # foreseer is safer than every setting: the HPA would need more than the safest.
        safest = min(ordered, key=lambda s: (s.underprov_time, s.replica_hours))
        hpa_hours, hours_bound = safest.replica_hours, AT_LEAST
        notes.append(f"foreseer is under-provisioned less than every swept HPA (safest: "
                     f"fraction {safest.knob}): the saving is at least the value given")
    elif hours_bound == AT_MOST:
        notes.append(f"the HPA at its highest swept fraction {ordered[-1].knob} is no less safe "
                     "than foreseer, and may be cheaper beyond it: the saving is at most the "
                     "value given")
    dominated_by = [s.knob for s in ordered
                    if s.replica_hours <= replica_hours and s.underprov_time <= underprov_time
                    and (s.replica_hours, s.underprov_time) != (replica_hours, underprov_time)]
    return {
        "compares": HOURS_ONLY if never_short else BOTH,
        "hpa_underprov_at_equal_cost": hpa_short,
        "underprov_ratio_at_equal_cost": ratio,
        "underprov_ratio_is": None if ratio is None else cost_bound,
        "hpa_replica_hours_at_equal_underprov": hpa_hours,
        "replica_hours_saved_at_equal_underprov": 1 - replica_hours / hpa_hours,
        "replica_hours_saved_is": hours_bound,
        "dominated_by_hpa_fractions": dominated_by,
        "notes": notes,
    }


def _verdict(key: str, value: float | None) -> dict[str, Any]:
    sense, target = TARGETS[key]
    met = value is not None and (value <= target if sense == "<=" else value >= target)
    return {"value": value, "target": f"{sense} {target}", "met": met}


def summarize_frontier(points: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The medians and the worst over the series of ``points`` (name -> frontier_point),
    against their targets. Ratios are taken over the series that compare under-provisioned
    time; an infinite ratio counts as the worst (its value is then None, never met)."""
    ratios = {name: math.inf if p["underprov_ratio_at_equal_cost"] is None
              else p["underprov_ratio_at_equal_cost"]
              for name, p in points.items() if p["compares"] == BOTH}
    savings = [p["replica_hours_saved_at_equal_underprov"] for p in points.values()]

    def finite(value: float | None) -> float | None:
        return value if value is not None and math.isfinite(value) else None

    worst = max(ratios, key=lambda n: ratios[n]) if ratios else None
    return {
        "median_underprov_ratio_at_equal_cost": _verdict(
            "median_underprov_ratio_at_equal_cost",
            finite(statistics.median(ratios.values())) if ratios else None),
        "worst_underprov_ratio_at_equal_cost": {
            **_verdict("worst_underprov_ratio_at_equal_cost",
                       finite(ratios[worst]) if worst else None),
            "series": worst,
        },
        "median_replica_hours_saved_at_equal_underprov": _verdict(
            "median_replica_hours_saved_at_equal_underprov",
            statistics.median(savings) if savings else None),
        "ratio_series": sorted(ratios),
        "series_with_bounds": sorted(
            name for name, p in points.items()
            if p["underprov_ratio_is"] not in (EXACT, None)
            or p["replica_hours_saved_is"] != EXACT),
    }
