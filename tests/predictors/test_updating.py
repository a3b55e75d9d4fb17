"""update(): a fitted model moves its origin to newer history without a full refit."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from foreseer.predictors.forecasts import Forecaster, Updatable
from foreseer.predictors.models import MODELS
from foreseer.predictors.series import Series

DAY = 288
STEP = 300.0


def daily(n: int) -> np.ndarray:
    t = np.arange(n)
    return 100 + 40 * np.sin(2 * np.pi * t / DAY) + np.random.default_rng(0).normal(0, 2, n)


pytestmark = pytest.mark.parametrize("factory", list(MODELS.values()), ids=list(MODELS))


def test_every_model_family_can_update(factory: Callable[[], Forecaster]) -> None:
    assert isinstance(factory(), Updatable)


def test_update_moves_the_forecast_to_the_end_of_the_newer_history(
    factory: Callable[[], Forecaster],
) -> None:
    values = daily(5 * DAY)
    model = factory().fit(Series(0.0, STEP, values[: 4 * DAY]))
    assert isinstance(model, Updatable)
    newer = Series(0.0, STEP, values[: 4 * DAY + 30])
    forecast = model.update(newer).predict(6)
    assert forecast.start == newer.end
    refit = factory().fit(newer).predict(6)
    # Keeping the learned parameters must not move the forecast far from a full refit.
    assert np.max(np.abs(forecast.mean - refit.mean)) < 15


def test_update_follows_a_new_level(factory: Callable[[], Forecaster]) -> None:
    values = np.full(4 * DAY, 100.0) + np.random.default_rng(1).normal(0, 1, 4 * DAY)
    model = factory().fit(Series(0.0, STEP, values))
    assert isinstance(model, Updatable)
    shifted = np.concatenate([values, np.full(60, 300.0)])
    forecast = model.update(Series(0.0, STEP, shifted)).predict(3)
    assert forecast.mean[0] > 200


def test_update_of_an_unfitted_model_fits_it(factory: Callable[[], Forecaster]) -> None:
    model = factory()
    assert isinstance(model, Updatable)
    forecast = model.update(Series(0.0, STEP, np.array([5.0, 6.0]))).predict(2)
    assert forecast.mean[0] == pytest.approx(6.0, abs=1.5)


def test_a_fallen_back_model_moves_its_simpler_model_on(
    factory: Callable[[], Forecaster],
) -> None:
    model = factory().fit(Series(0.0, STEP, np.array([5.0, 6.0])))
    assert isinstance(model, Updatable)
    newer = Series(0.0, STEP, np.array([5.0, 6.0, 7.0, 30.0]))
    forecast = model.update(newer).predict(2)
    assert forecast.start == newer.end
    assert forecast.mean[0] > 20
