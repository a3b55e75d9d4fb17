"""One figure of a run: the load, each policy's ready capacity, and foreseer's forecast band."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from foreseer.simulator.simulating import ORACLE, Run

# Long traces are thinned for drawing only; scores always use the full grid.
MAX_POINTS = 6000


def plot(run: Run, path: str | Path, title: str, band_of: str | None = None) -> Path:
    """Write a PNG to ``path``; ``band_of`` names the policy whose forecast band is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    every = max(1, run.grid.size // MAX_POINTS)
    days = (run.grid[::every] - run.grid[0]) / 86400.0
    capacity = run.workload.capacity
    fig, ax = plt.subplots(figsize=(14, 5), dpi=100)
    ax.plot(days, run.load[::every], color="black", lw=0.8, label="load")
    for label, ready in run.ready.items():
        oracle = label == ORACLE
        ax.step(days, ready[::every] * capacity, where="post", lw=0.7, alpha=0.85, label=label,
                ls="--" if oracle else "-", color="grey" if oracle else None)
    band = run.bands.get(band_of) if band_of else None
    if band is not None and band.times:
        times = (np.asarray(band.times) - run.grid[0]) / 86400.0
        ax.fill_between(times, band.low, band.high, color="tab:blue", alpha=0.18, lw=0,
                        label=f"{band_of} forecast band")
    ax.set_xlabel("days since the start of the trace")
    ax.set_ylabel("load / ready capacity (capacity units)")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8, ncol=4)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out)
    plt.close(fig)
    return out
