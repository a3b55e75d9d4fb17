"""Figures: one of a run (the load, each policy's ready capacity, foreseer's forecast
band) and one of a frontier (replica-hours against under-provisioned time per setting).

In a run's figure the top panel shows the whole trace; on traces longer than a few days
the bottom panel zooms into the two days around the busiest hour, where policies differ
most.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from foreseer.simulator.simulating import ORACLE, Run

# Long traces are thinned for drawing only; scores always use the full grid.
MAX_POINTS = 6000
DAY = 86400.0
ZOOM = 2 * DAY


def _draw(ax: Any, run: Run, since: float, until: float, band_of: str | None) -> None:
    inside = (run.grid >= since) & (run.grid < until)
    index = np.flatnonzero(inside)[:: max(1, int(inside.sum()) // MAX_POINTS)]
    days = (run.grid[index] - run.grid[0]) / DAY
    ax.plot(days, run.load[index], color="black", lw=0.8, label="load")
    for label, ready in run.ready.items():
        oracle = label == ORACLE
        ax.step(days, ready[index] * run.workload.capacity, where="post", lw=0.7, alpha=0.85,
                label=label, ls="--" if oracle else "-", color="grey" if oracle else None)
    band = run.bands.get(band_of) if band_of else None
    if band is not None and band.times:
        times = np.asarray(band.times)
        keep = (times >= since) & (times < until)
        ax.fill_between((times[keep] - run.grid[0]) / DAY, np.asarray(band.low)[keep],
                        np.asarray(band.high)[keep], color="tab:blue", alpha=0.18, lw=0,
                        label=f"{band_of} forecast band (median to quantile)")
    ax.set_ylabel("load / ready capacity")
    ax.grid(alpha=0.3)


def plot(run: Run, path: str | Path, title: str, band_of: str | None = None) -> Path:
    """Write a PNG to ``path``; ``band_of`` names the policy whose forecast band is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start, end = float(run.grid[0]), float(run.grid[-1]) + run.workload.grid_step
    zoom = end - start > 1.5 * ZOOM
    fig, axes = plt.subplots(2 if zoom else 1, 1, figsize=(14, 8 if zoom else 5), dpi=100,
                             squeeze=False)
    _draw(axes[0][0], run, start, end, band_of)
    axes[0][0].set_title(title)
    axes[0][0].legend(loc="upper left", fontsize=8, ncol=4)
    if zoom:
        hour = max(1, round(3600 / run.workload.grid_step))
        hourly = np.convolve(run.load, np.ones(hour) / hour, mode="same")
        peak = float(run.grid[int(np.argmax(hourly))])
        since = min(max(start, peak - ZOOM / 2), end - ZOOM)
        _draw(axes[1][0], run, since, since + ZOOM, band_of)
        axes[1][0].set_title("the two days around the busiest hour")
    axes[-1][0].set_xlabel("days since the start of the trace")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out)
    plt.close(fig)
    return out


def plot_frontier(path: str | Path, title: str, hpa: Sequence[tuple[float, float, float]],
                  foreseer: Sequence[tuple[float, float, float]], default: float) -> Path:
    """Write a PNG of replica-hours against under-provisioned time: the HPA's points
    (knob, replica-hours, under-provisioned time) joined in knob order and labelled by
    target fraction, and foreseer's joined by quantile, ``default`` drawn larger."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5), dpi=100)
    for points, label, style, knob, below in (
            (sorted(hpa), "HPA v2 by target fraction", "o-", "", 4),
            (sorted(foreseer), "foreseer Auto by quantile", "s--", "q", -10)):
        hours = [p[1] for p in points]
        short = [100 * p[2] for p in points]
        line = ax.plot(hours, short, style, ms=4, lw=1, label=label)[0]
        for value, x, y in zip((p[0] for p in points), hours, short, strict=True):
            ax.annotate(f"{knob}{value:g}", (x, y), textcoords="offset points", xytext=(4, below),
                        fontsize=7, color=line.get_color())
    mine = [p for p in foreseer if p[0] == default]
    ax.plot([p[1] for p in mine], [100 * p[2] for p in mine], "*", ms=14, color="tab:orange",
            label=f"foreseer Auto, default quantile {default:g}")
    ax.set_xlabel("replica-hours")
    # Shortfalls span orders of magnitude along a sweep; symlog keeps the near-zero
    # end, where the policies differ, readable next to a cheap setting's large one.
    ax.set_yscale("symlog", linthresh=0.1)
    ax.set_ylabel("under-provisioned time (%, symlog)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out)
    plt.close(fig)
    return out
