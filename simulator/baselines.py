"""Our implementations of other autoscalers' forecasting ideas, for the "-style" baselines.

Neither is foreseer's: they follow the projects' public documentation so the
benchmark compares against what a user of those tools would get.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from foreseer.predictors.series import FloatArray

DAY = 86400.0
WEEK = 7 * DAY


@dataclass
class CraneDsp:
    """Crane's DSP predictor (gocrane/crane, pkg/prediction/dsp), as its docs describe it.

    The history is checked for a daily or weekly period; if it has one, the
    last whole periods are Fourier-transformed, high-frequency and
    low-amplitude components are dropped, and the inverse transform, repeated,
    is the forecast, raised by a safety margin. Without a period there is no
    forecast and the EHPA falls back to the current metric.
    """

    margin: float = 0.1
    """Crane's marginFraction: the forecast is multiplied by 1 + margin."""
    min_correlation: float = 0.5
    """Autocorrelation at the period's lag below which the history is not periodic."""
    high_frequency: float = 1.0 / 3600.0
    """Components faster than this (per second) are noise (Crane's highFrequencyThreshold)."""
    max_components: int = 100
    """Crane's maxNumOfSpectrumItems: the strongest components kept."""
    low_amplitude: float = 0.01
    """Components weaker than this fraction of the strongest non-constant one are dropped."""
    max_periods: int = 7
    """How many periods of history are transformed (Crane fits on the last 7 days for daily)."""
    signal_: FloatArray | None = field(default=None, init=False)
    """One period of the filtered signal, or None when the history was not periodic."""
    origin_: float = field(default=0.0, init=False)
    """Unix time of the signal's first point."""
    step_: float = field(default=1.0, init=False)

    def fit(self, start: float, step: float, values: FloatArray) -> CraneDsp:
        """Fit on observed values from ``start`` every ``step`` seconds (NaN = missing)."""
        self.signal_, self.step_ = None, step
        for period in (DAY, WEEK):
            lag = round(period / step)
            periods = min(self.max_periods, len(values) // lag)
            if lag < 2 or periods < 2:
                continue
            recent = values[len(values) - periods * lag :]
            if np.isnan(recent).any():
                idx = np.arange(recent.size)
                known = ~np.isnan(recent)
                if known.sum() < 2:
                    continue
                recent = np.interp(idx, idx[known], recent[known])
            if _autocorrelation(recent, lag) < self.min_correlation:
                continue
            spectrum = np.fft.rfft(recent)
            freqs = np.fft.rfftfreq(recent.size, d=step)
            spectrum[freqs > self.high_frequency] = 0
            amplitude = np.abs(spectrum)
            amplitude[0] = 0
            if amplitude.max() > 0:
                weak = amplitude < self.low_amplitude * amplitude.max()
                spectrum[1:][weak[1:]] = 0
                order = np.argsort(amplitude[1:])[::-1]
                spectrum[1:][order[self.max_components :]] = 0
            signal = np.fft.irfft(spectrum, n=recent.size)[-lag:]
            self.signal_ = np.clip(signal, 0.0, None) * (1.0 + self.margin)
            self.origin_ = start + (len(values) - lag) * step
            break
        return self

    def window_max(self, since: float, until: float) -> float | None:
        """The highest forecast value in ``[since, until]``, or None without a forecast."""
        if self.signal_ is None:
            return None
        first = int(np.floor((since - self.origin_) / self.step_))
        last = int(np.ceil((until - self.origin_) / self.step_))
        index = np.arange(first, last + 1) % self.signal_.size
        return float(self.signal_[index].max())


def _autocorrelation(values: FloatArray, lag: int) -> float:
    a, b = values[:-lag] - values.mean(), values[lag:] - values.mean()
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


@dataclass
class PhpaHoltWinters:
    """PHPA's Holt-Winters (jthomperoo/predictive-horizontal-pod-autoscaler) on replica counts.

    PHPA refits statsmodels' additive Holt-Winters with the user's fixed
    smoothing parameters over its stored replica history on every sync. With
    fixed parameters that fit is the textbook recursion run forward, so we run
    the recursion one step per sync instead of refitting: the same numbers
    at O(1) per tick, which keeps a 40,000-tick replay fast.
    """

    season: int
    """Season length in syncs (a day of decisions)."""
    alpha: float = 0.9
    """Level smoothing (PHPA's documented example value)."""
    beta: float = 0.9
    """Trend smoothing."""
    gamma: float = 0.9
    """Seasonal smoothing."""
    history_: list[float] = field(default_factory=list, init=False)
    """Replica counts seen before the first full season initialised the model."""
    level_: float = field(default=0.0, init=False)
    trend_: float = field(default=0.0, init=False)
    seasonal_: FloatArray | None = field(default=None, init=False)
    """Seasonal components, indexed by sync number modulo the season."""
    seen_: int = field(default=0, init=False)

    def update(self, replicas: float) -> None:
        """Add the replica count the HPA computed at this sync."""
        if self.seasonal_ is None:
            self.history_.append(replicas)
            self.seen_ += 1
            if len(self.history_) == 2 * self.season:
                first = np.asarray(self.history_[: self.season])
                second = np.asarray(self.history_[self.season :])
                self.level_ = float(second.mean())
                self.trend_ = float((second.mean() - first.mean()) / self.season)
                self.seasonal_ = second - second.mean()
                self.history_ = []
            return
        i = self.seen_ % self.season
        last_level = self.level_
        self.level_ = self.alpha * (replicas - self.seasonal_[i]) + (1 - self.alpha) * (
            last_level + self.trend_
        )
        self.trend_ = self.beta * (self.level_ - last_level) + (1 - self.beta) * self.trend_
        self.seasonal_[i] = (self.gamma * (replicas - self.level_)
                             + (1 - self.gamma) * self.seasonal_[i])
        self.seen_ += 1

    def predict(self, steps: int) -> float | None:
        """The highest predicted replica count over the next ``steps`` syncs; None before
        two seasons of history (statsmodels needs two to initialise the season)."""
        if self.seasonal_ is None:
            return None
        ahead = np.arange(1, max(1, steps) + 1)
        season = self.seasonal_[(self.seen_ + ahead - 1) % self.season]
        return float((self.level_ + ahead * self.trend_ + season).max())
