"""The registry of model families, by the names a ScalingPolicy's `forecast.models` uses.

Every factory takes no arguments and returns an unfitted `Forecaster` that
detects its own periods and masks anomalies on `fit`; `AutoForecaster` and
the benchmark call them once per fit. Options are set with a lambda or
`functools.partial` in a mapping of one's own.
"""

from __future__ import annotations

from collections.abc import Callable

from foreseer.predictors.boosting import Boosting
from foreseer.predictors.ewma import EWMA
from foreseer.predictors.forecasts import Forecaster
from foreseer.predictors.fourier import Fourier
from foreseer.predictors.holtwinters import HoltWinters
from foreseer.predictors.naive import Naive, SeasonalNaive

MODELS: dict[str, Callable[[], Forecaster]] = {
    "naive": Naive,
    "seasonal_naive": SeasonalNaive,
    "ewma": EWMA,
    "holt_winters": HoltWinters,
    "fourier": Fourier,
    "boosting": Boosting,
}
"""Model name -> factory of an unfitted forecaster."""
