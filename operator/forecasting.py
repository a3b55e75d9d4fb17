"""One metric's forecast step, as the operator's handler and the simulator both take it.

Pure: a history, the fitted model (or none), the policy's horizon, the metric's live error
and ``now`` in; the forecast `decide()` gets, the error it is trusted on, whether a refit is
due, and why there is no forecast, out. No I/O, no clock: the callers own fitting (a process
pool in the operator, inline in the simulator) and pass the time.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from foreseer.operator.deciding import ForecastInput
from foreseer.operator.durations import parse_duration
from foreseer.operator.specs import ForecastSpec, ScalingPolicySpec
from foreseer.predictors.forecasts import Forecaster
from foreseer.predictors.series import Series

logger = logging.getLogger(__name__)

# A drifting model is refitted at most this often: a load no model predicts well must not
# keep a fitting worker busy with one policy.
MIN_REFIT_SECONDS = 300.0
# Live error above this many times the trust threshold triggers a refit.
DRIFT_FACTOR = 1.0
# A fit that failed is retried only this long after, not on every tick: a history the models
# refuse would otherwise keep a fitting worker busy and the log full (one failed fit a second).
FIT_RETRY_SECONDS = 300.0


@dataclass(frozen=True)
class Recipe:
    """What a fit depends on; a change of recipe (the policy was edited) means a refit."""

    models: tuple[str, ...] | None
    """Model names to choose from, or None for every model (``models: auto``)."""
    quantile: float
    """The quantile the policy provisions for (model selection scores pinball loss at it)."""
    step: float
    """History resolution in seconds."""
    history: float
    """Seconds of history fitted on (the policy's ``forecast.history``)."""
    horizon: int
    """Steps ahead the fit backtests and calibrates: the policy's horizon, quantised by
    `backtest_steps` so that a jittering ``horizon: auto`` does not mean a refit."""


HORIZON_RUNGS = tuple(60.0 * m for m in (1, 2, 3, 5, 10, 15, 20, 30, 45, 60))
"""The horizons a fit is calibrated for, in seconds, up to an hour; longer horizons are
rounded up to whole hours. ``horizon: auto`` follows the measured lead time, which moves
with every pod that becomes ready; each rung is at most twice the one below, so the
calibration never reaches more than twice the horizon served."""


def backtest_steps(horizon: float, step: float) -> int:
    """The steps a fit for a ``horizon``-second forecast backtests and calibrates: the
    horizon rounded up to the next of `HORIZON_RUNGS` (or whole hour), in steps."""
    rung = next((r for r in HORIZON_RUNGS if horizon <= r), math.ceil(horizon / 3600.0) * 3600.0)
    return max(1, math.ceil(rung / step - 1e-9))


def horizon_seconds(horizon: str, interval: float, lead: float) -> float:
    """The forecast horizon: the spec's duration, or for ``auto`` the ``lead`` time a new
    replica takes to become ready plus one interval (the decision may come up to one
    interval late)."""
    if horizon == "auto":
        return lead + interval
    return parse_duration(horizon)


def grid_points(window: float, step: float) -> int:
    """How many points a ``window``-second history at ``step`` holds."""
    return max(1, math.ceil(window / step))


def history_grid(now: float, step: float, window: float) -> tuple[float, int]:
    """The grid the history of ``window`` seconds up to ``now`` is read on: its first point
    and its length. Points sit on whole multiples of ``step``, so histories read at two
    ticks between the same points are the same history."""
    points = grid_points(window, step)
    last = math.floor(now / step) * step
    return last - (points - 1) * step, points


def recipe_for(forecast: ForecastSpec, horizon: float) -> Recipe:
    """The fit a policy's ``forecast`` section needs to forecast ``horizon`` seconds ahead."""
    step = parse_duration(forecast.step)
    return Recipe(models=forecast.candidates, quantile=forecast.quantile, step=step,
                  history=parse_duration(forecast.history),
                  horizon=backtest_steps(horizon, step))


def recipe_forecaster(recipe: Recipe) -> Forecaster:
    """The unfitted AutoForecaster of ``recipe``: it fits on the recipe's history, and
    backtests and calibrates at the recipe's horizon."""
    # Imported here: a process that only forecasts from fitted models need not load
    # scikit-learn and every model family.
    from foreseer.predictors.selecting import AutoForecaster, SelectionSettings

    # Calibrate only the quantile the policy provisions for (the loop never asks for
    # another): the same forecast at that level, and each model the operator holds keeps
    # one level of past forecasts instead of six (46 KB less at the default horizon).
    defaults = SelectionSettings()
    settings = dataclasses.replace(
        defaults, window=recipe.history,
        calibration=dataclasses.replace(defaults.calibration, levels=(recipe.quantile,)),
    )
    return AutoForecaster(quantile=recipe.quantile, models=recipe.models,
                          horizon=recipe.horizon, settings=settings)


def fit_recipe(series: Series, recipe: Recipe) -> Forecaster:
    """`recipe_forecaster` fitted on ``series``."""
    return recipe_forecaster(recipe).fit(series)


@dataclass(frozen=True)
class Fitted:
    """A fitted forecaster and when and on what it was fitted."""

    model: Forecaster
    recipe: Recipe
    fitted_at: float
    """When the fit finished (the caller's clock)."""
    points: int
    """Observed points in the history it was fitted on."""
    seconds: float
    """How long the fit took."""
    version: int | None = None
    """Its version in the model store; None while it is not stored (or there is no store)."""


@dataclass
class LiveError:
    """Live MASE of a metric's forecast: its error at the horizon against the actual value,
    scaled by the error of the naive forecast (the last value) over the same lead.

    1.0 means "no better than assuming the load stays as it is", which is the scale
    of the policy's ``forecastTrust.maxErrorRatio``.
    """

    window: int = 120
    """How many scored forecasts the error averages over."""
    pending: dict[float, tuple[float, float]] = field(default_factory=dict)
    """Target time -> (forecast, naive forecast) not yet scored."""
    errors: deque[tuple[float, float]] = field(default_factory=deque)
    """(|forecast - actual|, |naive - actual|) of the latest scored forecasts."""
    fitted_at: float | None = None
    """When the model these errors belong to was fitted: a new model starts afresh."""

    def follow(self, fitted: Fitted) -> None:
        """Score ``fitted`` from now on; the errors of the model it replaced say nothing."""
        if self.fitted_at != fitted.fitted_at:
            self.reset()
            self.fitted_at = fitted.fitted_at

    def expect(self, target_time: float, forecast: float, naive: float) -> None:
        """Remember a forecast for ``target_time``, to score when the actual value arrives."""
        if np.isfinite(forecast) and np.isfinite(naive):
            self.pending[target_time] = (forecast, naive)

    def score(self, series: Series) -> None:
        """Score every remembered forecast whose target time the history now covers."""
        if not self.pending or len(series) == 0:
            return
        for target in sorted(t for t in self.pending if t < series.end):
            forecast, naive = self.pending.pop(target)
            index = round((target - series.start) / series.step)
            if not 0 <= index < len(series):
                continue  # fell off the history; nothing to score it against
            actual = float(series.values[index])
            if np.isfinite(actual):
                self.errors.append((abs(forecast - actual), abs(naive - actual)))
        while len(self.errors) > self.window:
            self.errors.popleft()

    def mase(self, minimum: int = 5) -> float | None:
        """The live MASE; None with fewer than ``minimum`` scored forecasts, or while the
        load has not moved."""
        if len(self.errors) < minimum:
            return None
        model = sum(e for e, _ in self.errors)
        naive = sum(n for _, n in self.errors)
        if naive <= 0:
            # The load did not move at all: that is no evidence either way for a perfect
            # forecast (unknown, so not trusted), and any error is infinitely worse.
            return None if model <= 0 else float("inf")
        return model / naive

    def reset(self) -> None:
        """Forget scored and pending forecasts."""
        self.errors.clear()
        self.pending.clear()


def urgency(history: Series, window: float = 1800.0) -> float:
    """How fast the load is rising: the mean of the last ``window`` seconds over the mean
    of the window before, minus one (0 when it is flat, falling, or unknown). A first fit
    of a rising load goes before the others."""
    points = max(1, round(window / history.step))
    values = history.values
    recent, before = values[-points:], values[-2 * points:-points]
    if before.size == 0 or np.isnan(recent).all() or np.isnan(before).all():
        return 0.0
    earlier = float(np.nanmean(before))
    if earlier <= 0:
        return 0.0
    return max(0.0, float(np.nanmean(recent)) / earlier - 1.0)


ROLLBACK_RATIO = 1.25
"""How much worse, live, a new model must score than the one it replaced to be rolled back:
a live MASE is noisy, and a refit that is merely as good must not flap."""
ROLLBACK_SAMPLES = 30
"""Scored forecasts the new model needs before it can be judged worse."""


def worse_than_before(before: float | None, errors: LiveError) -> bool:
    """Whether the model ``errors`` scores has done clearly worse live than its predecessor
    did (``before``, that one's live MASE when it was replaced; None: unknown)."""
    now = errors.mase(minimum=ROLLBACK_SAMPLES)
    if before is None or now is None or not math.isfinite(before):
        return False
    return now > before * ROLLBACK_RATIO


def predict(
    model: Forecaster, history: Series, steps: int, quantile: float, condition: bool = True
) -> tuple[float, float, str] | None:
    """(quantile value to provision for, point forecast at the horizon, model name).

    With ``condition``, the model is first conditioned on the newest history (no refit),
    so its forecast starts now and not where the last fit ended. The quantile value is the
    maximum over the horizon: replicas asked for now must cover the whole lead time.
    None when the model cannot forecast from this history.
    """
    try:
        update = getattr(model, "update", None)
        if condition and update is not None:
            update(history)
        forecast = model.predict(steps, quantiles=(quantile,))
    except ValueError as exc:
        logger.info("no forecast: %s", exc)
        return None
    upper = forecast.quantile(quantile)
    if not np.isfinite(upper).any():
        return None
    return float(np.nanmax(upper)), float(forecast.mean[-1]), forecast.model


def prior_error(model: Forecaster, steps: int) -> float | None:
    """The fit's backtest error at ``steps`` ahead relative to the naive model's (a MASE on the
    live error's scale), used until enough live forecasts have been scored; None if unknown."""
    scores = getattr(model, "scores_", None)
    selected = getattr(model, "selected_", None)
    if not scores or selected not in scores or "naive" not in scores:
        return None
    own, naive = scores[selected].mase, scores["naive"].mase
    at = min(steps, len(own), len(naive)) - 1
    if at < 0 or not np.isfinite(own[at]) or not np.isfinite(naive[at]) or naive[at] <= 0:
        return None
    return float(own[at] / naive[at])


def drifting(error: float | None, max_error_ratio: float) -> bool:
    """The live error says the model no longer fits the load."""
    return error is not None and error > DRIFT_FACTOR * max_error_ratio


def refit_due(fitted: Fitted | None, recipe: Recipe, now: float, retrain: float,
              drift: bool) -> str | None:
    """Why the metric's model should be (re)fitted now, or None when it is fine."""
    if fitted is None:
        return "no model yet"
    if fitted.recipe != recipe:
        return "the policy changed"
    age = now - fitted.fitted_at
    if age >= retrain:
        return "retrain interval elapsed"
    if drift and age >= MIN_REFIT_SECONDS:
        return "live forecast error drifted"
    return None


@dataclass(frozen=True)
class Plan:
    """What one policy's forecast step needs from its spec, at the tick's horizon."""

    recipe: Recipe
    horizon: float
    """Seconds ahead the replicas asked for now must cover."""
    retrain: float
    """Seconds between refits (``forecast.retrainInterval``)."""
    max_error_ratio: float
    """The trust threshold on the error (``guards.forecastTrust.maxErrorRatio``)."""

    @classmethod
    def of(cls, spec: ScalingPolicySpec, lead: float) -> Plan:
        """The plan of ``spec`` when a new replica takes ``lead`` seconds to become ready."""
        horizon = horizon_seconds(spec.forecast.horizon, parse_duration(spec.interval), lead)
        return cls(recipe=recipe_for(spec.forecast, horizon), horizon=horizon,
                   retrain=parse_duration(spec.forecast.retrain_interval),
                   max_error_ratio=spec.guards.forecast_trust.max_error_ratio)


@dataclass(frozen=True)
class Step:
    """What one tick's forecast step found for one metric."""

    forecast: ForecastInput | None
    """The forecast `decide()` gets; None without a usable model or forecast."""
    point: float | None
    """The point forecast at the horizon, when there is a forecast."""
    live_error: float | None
    """The live MASE, when enough forecasts were scored (may be infinite)."""
    refit: str | None
    """Why a refit is due now; None when the model is fine."""
    reason: str | None
    """Why a usable model gave no forecast; None otherwise."""
    usable: bool
    """A model fitted on the plan's recipe was held (else: a cold start, or an edited policy
    whose new model is not fitted yet)."""


def forecast_step(history: Series, fitted: Fitted | None, plan: Plan, errors: LiveError,
                  now: float, *, condition: bool = True) -> Step:
    """One metric's forecast at ``now`` from ``fitted``: score the live error on the history,
    say whether a refit is due, and forecast the quantile over the horizon.

    The forecast's trust is its live error, or until enough live forecasts are scored, the
    fit's backtest error at the same lead (`prior_error`). ``condition=False`` skips
    conditioning the model on a history it has already seen.
    """
    if fitted is not None:
        errors.follow(fitted)
    errors.score(history)
    live = errors.mase()
    refit = refit_due(fitted, plan.recipe, now, plan.retrain, drifting(live, plan.max_error_ratio))
    if fitted is None or fitted.recipe != plan.recipe:
        return Step(None, None, live, refit, None, usable=False)
    step = plan.recipe.step
    # Step k of a forecast is at history.end + k * step; the newest point lags now by up
    # to a step and a scrape, so count the horizon from now, not from the newest point.
    steps = max(1, math.ceil((now + plan.horizon - history.end) / step) + 1)
    quantile = plan.recipe.quantile
    result = predict(fitted.model, history, steps, quantile, condition)
    if result is None:
        return Step(None, None, live, refit, "the model gave no forecast for this history",
                    usable=True)
    value, point, model = result
    last = history.values[~np.isnan(history.values)]
    if last.size:
        errors.expect(history.end + (steps - 1) * step, point, float(last[-1]))
    mase = live if live is not None else prior_error(fitted.model, steps)
    forecast = ForecastInput(value=value, model=model, mase=mase, horizon=plan.horizon,
                             quantile=quantile, version=fitted.version)
    return Step(forecast, point, live, refit, None, usable=True)
