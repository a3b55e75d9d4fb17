"""Forecast combination: the mean of a few good models often beats the best of them alone.

Averaging cancels part of each model's own error (one lags a change, another
overshoots it), which is why simple combinations win forecasting
competitions. The AutoForecaster offers the combination of its best
candidates as one more candidate, scored on the same backtest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

import numpy as np

from foreseer.predictors.backtesting import Backtest
from foreseer.predictors.forecasts import (
    DEFAULT_QUANTILES,
    Forecast,
    Forecaster,
    Updatable,
    monotone,
    validate_horizon,
    validate_quantiles,
)
from foreseer.predictors.series import Series


class Combination:
    """A forecaster whose mean and quantiles are the means of its members'.

    Learned state: the members themselves, fitted (``members`` are fitted in
    place, so pass fresh ones, or fitted ones to `update`).
    """

    def __init__(self, members: Sequence[Forecaster], name: str = "") -> None:
        if not members:
            raise ValueError("a Combination needs at least one member")
        self.members = list(members)
        self.name = name

    def fit(self, series: Series) -> Self:
        self.members = [m.fit(series) for m in self.members]
        return self

    def update(self, series: Series) -> Self:
        """Move every member on; one that cannot update is refitted."""
        self.members = [
            m.update(series) if isinstance(m, Updatable) else m.fit(series) for m in self.members
        ]
        return self

    def predict(
        self, horizon_steps: int, quantiles: Sequence[float] = DEFAULT_QUANTILES
    ) -> Forecast:
        h = validate_horizon(horizon_steps)
        levels = validate_quantiles(quantiles)
        forecasts = [m.predict(h, levels) for m in self.members]
        mean = np.mean([f.mean for f in forecasts], axis=0)
        quants = {q: np.mean([f.quantile(q) for f in forecasts], axis=0) for q in levels}
        first = forecasts[0]
        return Forecast(first.start, first.step, mean, monotone(quants), self.name)


def combine(results: Sequence[Backtest], name: str = "") -> Backtest:
    """The backtest a Combination of these models would have had (same origins).

    No refit is needed: the combination's forecast at each origin is the mean
    of the members' forecasts there. An origin where any member failed is NaN.
    """
    first = results[0]
    for other in results[1:]:
        if not np.array_equal(other.origins, first.origins):
            raise ValueError("combined backtests must share their origins")
    lasts = [r.last for r in results]
    return Backtest(
        first.origins,
        first.actual,
        np.mean([r.mean for r in results], axis=0),
        {q: np.mean([r.quantile(q) for r in results], axis=0) for q in first.quantiles},
        tuple(f for r in results for f in r.failures),
        None if any(m is None for m in lasts) else Combination([m for m in lasts if m], name),
    )
