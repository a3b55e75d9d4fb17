"""Anomaly flags: one-off spikes and drops are flagged, left out of fitting and reported."""

from __future__ import annotations

import numpy as np
import pytest

from foreseer.predictors.anomalies import flag_anomalies
from foreseer.predictors.histories import prepare
from foreseer.predictors.models import MODELS
from foreseer.predictors.naive import Naive
from foreseer.predictors.series import Series

DAY = 288


def daily(days: int, noise: float = 3.0) -> np.ndarray:
    t = np.arange(days * DAY)
    rng = np.random.default_rng(0)
    return 100 + 40 * np.sin(2 * np.pi * t / DAY) + noise * rng.standard_normal(t.size)


def test_a_one_off_spike_and_a_drop_are_flagged() -> None:
    values = daily(4)
    values[500] = 900.0
    values[700:702] = 0.0
    flags = flag_anomalies(values, (DAY,))
    assert flags[500] and flags[700] and flags[701]
    assert flags.sum() <= 5


def test_a_spike_that_recurs_every_day_is_a_season_not_an_anomaly() -> None:
    values = daily(6)
    values[100::DAY] += 300.0  # a nightly job at the same time each day
    flags = flag_anomalies(values, (DAY,))
    assert not flags[100::DAY].any()


def test_a_level_shift_is_followed_not_flagged() -> None:
    values = daily(4)
    values[600:] += 400.0
    assert not flag_anomalies(values, (DAY,))[590:620].any()


def test_the_newest_points_are_never_flagged() -> None:
    values = daily(3)
    values[-1] = 5000.0  # a new spike and a new level look alike until the load comes back
    assert not flag_anomalies(values, (DAY,))[-3:].any()


def test_plain_noise_flags_almost_nothing() -> None:
    rng = np.random.default_rng(4)
    heavy_tailed = 100 + 10 * rng.standard_t(3, 5 * DAY)
    assert flag_anomalies(heavy_tailed, ()).mean() <= 0.01


def test_gaps_are_not_anomalies_and_short_histories_are_left_alone() -> None:
    values = daily(3)
    values[50:80] = np.nan
    flags = flag_anomalies(values, (DAY,))
    assert not flags[50:80].any()
    assert not flag_anomalies(np.array([1.0, 500.0, 1.0]), ()).any()


def test_prepared_history_masks_anomalies_for_fitting() -> None:
    values = daily(4)
    values[500] = 900.0
    history = prepare(Series(0.0, 300.0, values))
    assert history.anomalies[500]
    assert np.isnan(history.clean[500])
    assert history.raw[500] == 900.0
    assert 50 < history.filled[500] < 200, "the masked point is interpolated, not kept"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_fitted_model_reports_its_anomalies(name: str) -> None:
    values = daily(4)
    values[[400, 800]] = 2000.0
    model = MODELS[name]().fit(Series(0.0, 300.0, values))
    assert model.n_anomalies_ == 2
    assert model.anomalies_[[400, 800]].all()


def test_masking_can_be_turned_off() -> None:
    values = daily(4)
    values[400] = 2000.0
    model = Naive(mask_anomalies=False).fit(Series(0.0, 300.0, values))
    assert model.n_anomalies_ == 0


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_spike_arriving_after_the_fit_is_flagged_on_update(name: str) -> None:
    values = daily(4)
    values[3 * DAY + 5] = 5000.0
    model = MODELS[name]().fit(Series(0.0, 300.0, values[: 3 * DAY]))
    model.update(Series(0.0, 300.0, values))
    assert model.anomalies_[3 * DAY + 5]
    assert model.predict(12).mean.max() < 300
