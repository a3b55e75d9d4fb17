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
    monotone,
    moved_on,
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
        self.members = [moved_on(m, series) for m in self.members]
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


class Stitched:
    """A forecaster that takes each horizon step from the member chosen for that step.

    A model that tracks the latest level well is often best for the next few
    minutes and a seasonal one for the next hour; stitching serves each where
    it was best. Steps past ``choice`` take the last step's member.
    """

    def __init__(
        self, members: dict[str, Forecaster], choice: Sequence[str], name: str = ""
    ) -> None:
        missing = sorted(set(choice) - set(members))
        if not choice or missing:
            raise ValueError(f"every chosen step needs a member; missing {missing}")
        self.members = members
        self.choice = tuple(choice)
        self.name = name

    def fit(self, series: Series) -> Self:
        self.members = {n: m.fit(series) for n, m in self.members.items()}
        return self

    def update(self, series: Series) -> Self:
        """Move every member on; one that cannot update is refitted."""
        self.members = {n: moved_on(m, series) for n, m in self.members.items()}
        return self

    def predict(
        self, horizon_steps: int, quantiles: Sequence[float] = DEFAULT_QUANTILES
    ) -> Forecast:
        h = validate_horizon(horizon_steps)
        levels = validate_quantiles(quantiles)
        forecasts = {n: m.predict(h, levels) for n, m in self.members.items()}
        steps = [self.choice[min(j, len(self.choice) - 1)] for j in range(h)]
        mean = np.array([forecasts[n].mean[j] for j, n in enumerate(steps)])
        quants = {
            q: np.array([forecasts[n].quantile(q)[j] for j, n in enumerate(steps)]) for q in levels
        }
        first = forecasts[steps[0]]
        return Forecast(first.start, first.step, mean, monotone(quants), self.name)


def stitch(results: dict[str, Backtest], choice: Sequence[str], name: str = "") -> Backtest:
    """The backtest a Stitched forecaster would have had: each step's column from its member."""
    first = results[choice[0]]
    mean = np.column_stack([results[n].mean[:, j] for j, n in enumerate(choice)])
    quants = {
        q: np.column_stack([results[n].quantile(q)[:, j] for j, n in enumerate(choice)])
        for q in first.quantiles
    }
    used = {n: results[n] for n in dict.fromkeys(choice)}
    lasts = {n: r.last for n, r in used.items()}
    return Backtest(
        first.origins,
        first.actual,
        mean,
        quants,
        tuple(f for r in used.values() for f in r.failures),
        None
        if any(m is None for m in lasts.values())
        else Stitched({n: m for n, m in lasts.items() if m is not None}, choice, name),
    )
