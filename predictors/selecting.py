"""`AutoForecaster`: pick the model that under-forecasts least on this series, and calibrate it.

Every candidate is backtested over rolling origins on a recent window. The
winner has the lowest pinball loss at the requested quantile (0.9 by default),
because in autoscaling a forecast that runs short costs far more than one that
runs long. Pinball is measured on *calibrated* quantiles, cross-fitted (the
offsets applied to one half of the origins come from the other half), so a
model is judged on what it will actually serve, not on its raw quantiles.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Self

import numpy as np

from foreseer.predictors.backtesting import Backtest, BacktestSettings, Factory, backtest
from foreseer.predictors.calibrating import Calibrated, CalibrationSettings, conformal_offsets
from foreseer.predictors.forecasts import (
    DEFAULT_QUANTILES,
    Forecast,
    validate_horizon,
    validate_quantiles,
)
from foreseer.predictors.histories import checked_values
from foreseer.predictors.periods import DAY
from foreseer.predictors.scores import Scores, naive_mae
from foreseer.predictors.series import FloatArray, Series, steps_in


@dataclass(frozen=True)
class SelectionSettings:
    """What the AutoForecaster optimises and how much work its fit may do."""

    window: float = 14 * DAY
    """Most recent seconds fitted on (14 days, whatever the step): bounds the fit time on
    long histories, and old regimes say little about the next hour. The operator fits on
    the policy's ``forecast.history``."""
    origin_spacing: float = 1800.0
    """Seconds between backtest origins, the calibration backtest's stride at the series'
    step: one origin per half hour, so 96 origins cover the same two days (and times of
    day) at a 1-minute step as at a 5-minute one."""
    origin_share: float = 0.3
    """Most share of the window the origins span; on a shorter history they are closer
    together than ``origin_spacing``, so the model fitted at the oldest origin still sees
    most of the history (five of seven days, enough cycles for a daily season)."""
    min_stride: int = 6
    """Fewest steps between origins, whatever ``origin_share`` asks: origins a step or two
    apart forecast nearly the same targets, so the calibration would count one miss many
    times over (a history too short for ``min_origins`` origins this far apart is served
    by ``fallback``)."""
    calibration: CalibrationSettings = field(
        default_factory=lambda: CalibrationSettings(backtest=BacktestSettings(origins=96))
    )
    """The backtest shared by selection and calibration (96 origins: 48 hourly ones left
    the q0.9 offsets noisy); its horizon is the AutoForecaster's and its stride
    ``origin_spacing``."""
    fallback: str = "naive"
    """Model used, uncalibrated, when the history is too short to backtest."""
    default: str | None = "boosting"
    """The candidate served unless another's backtest pinball is lower by ``margin``:
    a few dozen origins rank close candidates by noise (docs/forecasting.md has the
    measurements). None: no default."""
    margin: float = 0.2
    """Share by which a candidate's mean backtest pinball must beat the default's for it
    to be served instead."""

    def __post_init__(self) -> None:
        if not self.window > 0 or not self.origin_spacing > 0:
            raise ValueError("SelectionSettings.window and origin_spacing must be positive")
        if not 0 < self.origin_share <= 1:
            raise ValueError("SelectionSettings.origin_share must lie in (0, 1]")
        if self.min_stride < 1:
            raise ValueError("SelectionSettings.min_stride must be at least 1")


class AutoForecaster:
    """A Forecaster that backtests its candidates per series and serves the calibrated winner.

    ``models`` names candidates from the registry `foreseer.predictors.models.MODELS`
    (None: all of them) or maps names to factories; ``quantile`` is the level
    whose pinball loss picks the winner, the one the scaling acts on; ``horizon``
    is how many steps ahead the candidates are backtested and calibrated (the
    lead time scaling needs: the operator passes the policy's horizon), and steps
    predicted beyond it reuse its last calibration.

    Learned state:
    ``selected_`` the winning candidate's name; ``scores_`` name -> per-step
    `Scores` (MASE, sMAPE, pinball, coverage at ``quantile``) for every
    candidate that could be backtested; ``rejected_`` name -> why a candidate
    could not; ``calibrated_`` the fitted, calibrated winner; ``fallback_`` why
    the selection was skipped (a short history), or None.
    """

    def __init__(
        self,
        models: Sequence[str] | Mapping[str, Factory] | None = None,
        quantile: float = 0.9,
        horizon: int = 12,
        settings: SelectionSettings | None = None,
    ) -> None:
        validate_quantiles((quantile,))
        validate_horizon(horizon)
        self.models = models
        self.quantile = quantile
        self.horizon = horizon
        self.settings = settings or SelectionSettings()

    def _candidates(self) -> dict[str, Factory]:
        if isinstance(self.models, Mapping):
            candidates = dict(self.models)
        else:
            # Imported here: the registry imports every model family, which
            # callers passing their own factories do not need.
            from foreseer.predictors.models import MODELS

            names = list(MODELS) if self.models is None else list(self.models)
            unknown = sorted(set(names) - set(MODELS))
            if unknown:
                raise ValueError(f"unknown model(s) {unknown}; known: {sorted(MODELS)}")
            candidates = {name: MODELS[name] for name in names}
        if not candidates:
            raise ValueError("AutoForecaster needs at least one candidate model")
        return candidates

    def fit(self, series: Series) -> Self:
        checked_values(series)
        s = self.settings
        recent = series.last(s.window)
        candidates = self._candidates()
        cal = dataclasses.replace(
            s.calibration,
            backtest=dataclasses.replace(
                s.calibration.backtest, horizon=self.horizon, stride=self._stride(recent)
            ),
        )
        origins = cal.backtest.origin_indices(recent)
        self.scores_: dict[str, Scores] = {}
        self.rejected_: dict[str, str] = {}
        self.fallback_: str | None = None
        if origins.size < cal.min_origins:
            return self._fall_back(recent, candidates, origins.size, cal)
        levels = tuple(sorted({*cal.levels, self.quantile}))
        scale = _mase_scale(recent)
        results: dict[str, Backtest] = {}
        for name, factory in candidates.items():
            result = backtest(factory, recent, cal.backtest, levels)
            if np.isnan(result.mean).all():
                self.rejected_[name] = "; ".join(result.failures[-1:]) or "no usable origin"
                continue
            results[name] = result
            self.scores_[name] = _cross_fitted_scores(result, cal, self.quantile, scale)
        if not results:
            raise ValueError(f"no candidate could be backtested: {self.rejected_}")
        self.selected_ = self._winner(results)
        self.calibrated_ = Calibrated(candidates[self.selected_](), cal).fit_from(
            recent, results[self.selected_]
        )
        return self

    def _stride(self, recent: Series) -> int:
        """Steps between backtest origins: ``origin_spacing``, closer on a short history
        (but ``min_stride`` apart unless the spacing itself is shorter)."""
        s = self.settings
        share = math.floor(s.origin_share * len(recent) / s.calibration.backtest.origins)
        return min(steps_in(s.origin_spacing, recent.step), max(s.min_stride, share))

    def _winner(self, results: Mapping[str, Backtest]) -> str:
        """The lowest mean pinball, unless it does not clearly beat the default."""
        s = self.settings
        pinball = {n: _mean_or_inf(self.scores_[n].pinball) for n in results}
        best = min(pinball, key=pinball.__getitem__)
        if s.default in pinball and pinball[best] > (1.0 - s.margin) * pinball[s.default]:
            return s.default
        return best

    def _fall_back(
        self,
        recent: Series,
        candidates: dict[str, Factory],
        origins: int,
        cal: CalibrationSettings,
    ) -> Self:
        s = self.settings
        name = s.fallback if s.fallback in candidates else next(iter(candidates))
        self.selected_ = name
        self.fallback_ = (
            f"{recent.observed()} observed points allow {origins} backtest origin(s), "
            f"fewer than {cal.min_origins}: serving {name!r} without selection"
        )
        self.calibrated_ = Calibrated(candidates[name](), cal).fit_from(
            recent, Backtest.empty(cal.backtest.horizon)
        )
        return self

    def update(self, series: Series) -> Self:
        """Condition the winner on newer history, keeping the choice and the calibration."""
        checked_values(series)
        self.calibrated_.update(series.last(self.settings.window))
        return self

    def predict(
        self, horizon_steps: int, quantiles: Sequence[float] = DEFAULT_QUANTILES
    ) -> Forecast:
        h = validate_horizon(horizon_steps)
        levels = validate_quantiles(quantiles)
        forecast = self.calibrated_.predict(h, levels)
        return dataclasses.replace(forecast, model=self.served_name())

    def served_name(self) -> str:
        """The winner's name, and the simpler model answering for it when it fell back
        (too little history even for the fit on the whole series): a decision's reason
        must name the model that actually forecast."""
        delegate = getattr(self.calibrated_.model_, "delegate_", None)
        if delegate is None:
            return self.selected_
        simpler = getattr(delegate, "name", type(delegate).__name__)
        return f"{self.selected_} (fell back to {simpler})"


def _mase_scale(recent: Series) -> float:
    """In-sample naive MAE of the window; 1.0 for a flat one so MASE stays defined."""
    scale = naive_mae(recent.values, 1)
    return scale if np.isfinite(scale) and scale > 0 else 1.0


def _cross_fitted_scores(
    result: Backtest, cal: CalibrationSettings, q: float, scale: float
) -> Scores:
    """Scores of the calibrated q forecast, each half of the origins calibrated on the other."""
    rows = np.arange(result.origins.size) % 2 == 0
    upper = np.full_like(result.mean, np.nan)
    for part in (rows, ~rows):
        offsets = conformal_offsets(result.subset(~part), (q,), cal.spread, min_origins=1)
        upper[part] = result.quantile(q)[part] + offsets.at(q, result.horizon)
    return Scores.of(result.actual, result.mean, upper, q, scale)


def _mean_or_inf(values: FloatArray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("inf")
