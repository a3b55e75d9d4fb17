"""Period detection finds calendar and data-driven seasons, robust to gaps and spikes."""

from __future__ import annotations

import numpy as np

from foreseer.predictors.periods import detect_periods

DAY = 288  # 5-minute steps
WEEK = 7 * DAY
STEP = 300.0


def seasonal(n: int, *periods_and_amplitudes: tuple[int, float], noise: float = 5.0) -> np.ndarray:
    t = np.arange(n)
    values = 200 + noise * np.random.default_rng(1).standard_normal(n)
    for period, amplitude in periods_and_amplitudes:
        values = values + amplitude * np.sin(2 * np.pi * t / period)
    return values


def test_a_daily_cycle_in_five_minute_steps_is_found() -> None:
    assert detect_periods(seasonal(5 * DAY, (DAY, 50)), STEP) == (DAY,)


def test_daily_and_weekly_cycles_are_both_found() -> None:
    values = seasonal(4 * WEEK, (DAY, 50), (WEEK, 40))
    assert detect_periods(values, STEP) == (DAY, WEEK)


def test_a_period_that_is_no_calendar_unit_is_found_from_the_data() -> None:
    values = seasonal(3000, (37, 30))
    assert detect_periods(values, 60.0) == (37,)


def test_a_short_peak_is_found_when_a_fractional_number_of_cycles_fits() -> None:
    # A 30-step plateau every 240 steps, 4.4 and 5.4 cycles long: the strongest periodogram
    # bin then says 264 or 260 steps, more than 5% off the true period.
    t = np.arange(1300)
    values = np.where(t % 240 < 30, 400.0, 100.0)
    for n in (1056, 1300):
        assert detect_periods(values[:n], 5.0) == (240,)


def test_gaps_do_not_hide_the_daily_cycle() -> None:
    values = seasonal(6 * DAY, (DAY, 50))
    values[300:500] = np.nan
    values[1000:1100] = np.nan
    values[np.random.default_rng(2).choice(values.size, 150, replace=False)] = np.nan
    assert detect_periods(values, STEP) == (DAY,)


def test_spikes_neither_hide_a_season_nor_make_one() -> None:
    values = seasonal(5 * DAY, (DAY, 50))
    values[[100, 700, 1300]] = 50_000.0
    assert detect_periods(values, STEP) == (DAY,)
    flat = seasonal(5 * DAY, noise=5.0)
    flat[:: DAY // 2] = 50_000.0  # two spikes a day, but nothing between them repeats
    flat[:: DAY // 2] = flat[:: DAY // 2] * np.linspace(0.5, 1.5, flat[:: DAY // 2].size)
    assert DAY not in detect_periods(flat, STEP)


def test_noise_a_random_walk_and_a_trend_have_no_period() -> None:
    rng = np.random.default_rng(3)
    assert detect_periods(100 + rng.standard_normal(5 * DAY), STEP) == ()
    assert detect_periods(1000 + np.cumsum(rng.standard_normal(5 * DAY)), STEP) == ()
    assert detect_periods(np.arange(5 * DAY, dtype=float), STEP) == ()


def test_a_multiple_of_the_period_is_not_reported_as_another_season() -> None:
    found = detect_periods(seasonal(10 * DAY, (DAY, 50)), STEP)
    assert 2 * DAY not in found and 3 * DAY not in found


def test_fewer_than_two_cycles_cannot_show_a_period() -> None:
    assert DAY not in detect_periods(seasonal(int(1.5 * DAY), (DAY, 50)), STEP)


def test_a_constant_or_tiny_series_has_no_period() -> None:
    assert detect_periods(np.full(3 * DAY, 5.0), STEP) == ()
    assert detect_periods(np.array([1.0, 2.0, 3.0]), STEP) == ()
    assert detect_periods(np.full(100, np.nan), STEP) == ()
