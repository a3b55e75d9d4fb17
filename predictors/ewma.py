"""EWMA with drift: an exponentially weighted level plus a smoothed drift (Holt's linear).

It is the season-free, undamped corner of the Holt-Winters recursion, so it
reuses that grid smoother with its own parameter grid; `beta = 0` (no drift)
is in the grid, so a flat load is not given a slope it does not have.
"""

from __future__ import annotations

from collections.abc import Sequence

from foreseer.predictors.histories import History
from foreseer.predictors.holtwinters import SmoothingModel
from foreseer.predictors.naive import Naive
from foreseer.predictors.periods import DAY
from foreseer.predictors.series import steps_in

ALPHAS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)
DRIFTS = (0.0, 0.01, 0.05, 0.1, 0.2)


class EWMA(SmoothingModel):
    """Level and drift smoothed over the last `window` seconds; naive below 3 points."""

    name = "ewma"
    window: float

    def __init__(
        self,
        periods: Sequence[int] | None = None,
        mask_anomalies: bool = True,
        window: float = 14 * DAY,
    ) -> None:
        super().__init__(periods, mask_anomalies)
        self.window = window

    def _fit(self, history: History) -> None:
        n = history.filled.size
        if n < 3:
            self._degrade(f"only {n} point(s) to smooth", Naive(history.periods))
            return
        self.period_ = 0
        self._smooth(history, steps_in(self.window, history.step), (ALPHAS, DRIFTS, (0.0,), (1.0,)))
