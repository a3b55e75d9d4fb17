"""One figure of a run: the load, each policy's ready capacity, and foreseer's forecast band.

The top panel shows the whole trace; on traces longer than a few days the bottom
panel zooms into the two days around the busiest hour, where policies differ most.
"""

from __future__ import annotations

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
