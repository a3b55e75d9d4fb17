"""Seasonal period detection, robust to gaps and spikes (the DSP idea in Crane).

Candidates come from the calendar (hour, day, week, when the step makes them
visible) and from peaks of the periodogram. Each is then tested on the
autocorrelation function, which a spike or a trend cannot fake:

* the series is first filled (gaps interpolated), detrended and clipped at a
  robust bound, so one spike cannot dominate either transform;
* a period must show a clear ACF peak: strong (``acf >= min_strength``) and
  prominent over the half-period lags in between, which a random walk or a
  trend never is because their ACF decays monotonically;
* a multiple of an accepted shorter period (two days when one day is the
  period) must add similarity of its own, so harmonics are not reported.
"""

from __future__ import annotations

import math

import numpy as np

from foreseer.predictors.gaps import interpolate_gaps
from foreseer.predictors.series import FloatArray

HOUR = 3600.0
DAY = 24 * HOUR
WEEK = 7 * DAY
CALENDAR_SECONDS: tuple[float, ...] = (HOUR, DAY, WEEK)
"""Calendar periods tried first, when a whole number of steps long."""


def robust_scale(x: FloatArray) -> float:
    """1.4826 * MAD, falling back to the mean absolute deviation for very discrete data."""
    centred = np.abs(x - np.median(x))
    scale = 1.4826 * float(np.median(centred))
    return scale if scale > 0 else 1.2533 * float(np.mean(centred))


def conditioned(values: FloatArray) -> FloatArray:
    """Gaps filled, linear trend removed, spikes clipped: ready for the ACF and periodogram."""
    x = interpolate_gaps(values)
    t = np.arange(x.size, dtype=np.float64)
    slope, intercept = np.polyfit(t, x, 1)
    x = x - (slope * t + intercept)
    bound = 5.0 * robust_scale(x)
    if bound > 0:
        centre = float(np.median(x))
        x = np.clip(x, centre - bound, centre + bound)
    out: FloatArray = x - x.mean()
    return out


def autocorrelation(x: FloatArray) -> FloatArray:
    """Unbiased ACF for every lag below len(x), via FFT.

    Each lag is divided by its own number of overlapping pairs, so a weekly lag
    is not shrunk towards zero relative to a daily one.
    """
    n = x.size
    nfft = 1 << int(2 * n - 1).bit_length()
    spectrum = np.fft.rfft(x, nfft)
    raw = np.fft.irfft(spectrum * np.conj(spectrum), nfft)[:n]
    if raw[0] <= 0:
        return np.zeros(n)
    acf: FloatArray = raw / (n - np.arange(n)) / (raw[0] / n)
    return acf


def calendar_candidates(step: float) -> list[int]:
    """Hour, day and week in steps, when each is a whole number (>= 2) of steps."""
    out = []
    for seconds in CALENDAR_SECONDS:
        ratio = seconds / step
        if ratio >= 2 and abs(ratio - round(ratio)) < 1e-6 * ratio + 1e-9:
            out.append(round(ratio))
    return out


def spectral_candidates(x: FloatArray, max_period: int, count: int = 5) -> list[int]:
    """Periods of the strongest periodogram peaks that stand far above the noise floor.

    A periodogram bin of white noise is exponentially distributed, so a peak 20
    times the median power has a false-alarm rate near 1e-6 per bin.
    """
    n = x.size
    power = np.abs(np.fft.rfft(x)) ** 2
    k = np.arange(power.size)
    usable = (k >= 1) & (k * max_period >= n) & (k * 3 <= n)
    if not usable.any():
        return []
    floor = float(np.median(power[1:])) if power.size > 1 else 0.0
    interior = np.zeros(power.size, dtype=bool)
    interior[1:-1] = (power[1:-1] >= power[:-2]) & (power[1:-1] >= power[2:])
    peaks = np.flatnonzero(usable & interior & (power > 20.0 * floor))
    strongest = peaks[np.argsort(power[peaks])[::-1][:count]]
    return [round(n / float(i)) for i in strongest]


def peak_strength(acf: FloatArray, period: int) -> float:
    """How far the ACF at `period` rises above its lowest value across the cycle's middle."""
    lo, hi = max(1, period // 4), max(2, (3 * period) // 4 + 1)
    return float(acf[period] - acf[lo:hi].min())


def is_multiple(period: int, base: int) -> bool:
    """Whether `period` is within 5% of `base` of a whole multiple (>= 2) of `base`."""
    k = round(period / base)
    return k >= 2 and abs(period - k * base) <= max(1, base // 20)


def detect_periods(
    values: FloatArray,
    step: float,
    min_cycles: float = 2.0,
    min_strength: float = 0.15,
    min_prominence: float = 0.1,
    max_periods: int = 3,
    min_spectral_cycles: float = 4.0,
    min_gain: float = 0.05,
) -> tuple[int, ...]:
    """Significant seasonal periods in steps, shortest first; empty when there are none.

    `values` may hold NaN gaps. A calendar period needs at least `min_cycles`
    full cycles of data to be tested at all; a period found only in the data
    needs `min_spectral_cycles`, as slow wander easily looks like a long cycle.
    A multiple of a shorter accepted period must raise the ACF by `min_gain`.
    """
    observed = int(np.count_nonzero(~np.isnan(values)))
    if observed < 8 or values.size < 8:
        return ()
    x = conditioned(values)
    n = x.size
    max_period = int(n / min_cycles)
    if max_period < 2 or not np.any(x):
        return ()
    acfs: dict[int, FloatArray] = {}

    def acf_for(period: int) -> FloatArray:
        # Judge a period on the series smoothed over 1/24 of it (hourly means for a day), so
        # step-to-step noise does not hide a clear daily shape, as it would in a raw ACF.
        width = max(1, period // 24)
        if width not in acfs:
            smooth = np.convolve(x, np.ones(width) / width, mode="same") if width > 1 else x
            acfs[width] = autocorrelation(smooth)
        return acfs[width]

    calendar = [p for p in calendar_candidates(step) if p <= max_period]
    found: dict[int, float] = {}
    for period in calendar + sorted(spectral_candidates(x, max_period)):
        if period not in calendar:
            # A spectral peak is only accurate to a bin: it must sit on a true local ACF maximum
            # nearby, which a sideband of a broad daily peak does not.
            near = [c for c in calendar if abs(period - c) <= max(1, c // 20)]
            if near:
                period = near[0]
            elif period * min_spectral_cycles > n:
                continue
            else:
                # A periodogram bin spans periods n/(k + 1/2) to n/(k - 1/2): about period²/2n
                # each side, far more than 5% when few cycles fit (5.4 days of a daily
                # load peak at bin 5, 264 steps for 240).
                width = max(1, period // 20, math.ceil(period * period / (2 * n)))
                lo, hi = max(2, period - width), min(max_period, period + width)
                top = lo + int(np.argmax(acf_for(period)[lo : hi + 1]))
                if top in (lo, hi):
                    continue
                period = top
        if any(abs(period - p) <= max(1, p // 20) for p in found):
            continue
        acf = acf_for(period)
        strength = float(acf[period])
        if strength < min_strength or peak_strength(acf, period) < min_prominence:
            continue
        # The ACF must peak at the period itself, not at a nearby lag (a shorter cycle that
        # happens to almost fit a day would otherwise pass as a daily one).
        around = acf[max(1, period - period // 48) : period + period // 48 + 1]
        if around.max() - strength > min_gain:
            continue
        if any(is_multiple(period, p) and strength < acf[p] + min_gain for p in found):
            continue
        found[period] = strength
    # A shorter non-calendar period that a stronger multiple explains is a harmonic of it.
    kept = [
        p
        for p, s in found.items()
        if p in calendar or not any(q != p and is_multiple(q, p) and found[q] > s for q in found)
    ]
    strongest = sorted(kept, key=lambda p: -found[p])[:max_periods]
    return tuple(sorted(strongest))
