"""Model lifecycle: fit each policy's forecasters off the event loop, keep them in a bounded LRU,
refit on the retrain interval or when the live error drifts, and measure the live error and
the lead time that ``horizon: auto`` uses.

Fitting runs in a process pool (scikit-learn fits hold the GIL); a tick never waits
for a fit: it uses the model it has, or none (cold start, so Auto acts as Reactive)
until the first fit lands. Forecasting from a fitted model (conditioning it on the newest
history, then predicting) takes milliseconds of numpy, so it runs in one thread beside the
event loop, and the model is conditioned only when its history has changed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import math
import multiprocessing
import os
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from foreseer.operator.durations import parse_duration
from foreseer.operator.settings import FittingSettings
from foreseer.predictors.forecasts import Forecaster
from foreseer.predictors.series import Series

logger = logging.getLogger(__name__)

Key = tuple[str, str, str]
"""(namespace, policy, metric)."""

# Before any replica was seen becoming ready, assume this lead time for `horizon: auto`.
DEFAULT_LEAD_SECONDS = 60.0
# While a target's replicas stay put and all its pods are ready, its pods are listed again
# only this often: no new readiness to measure, and 1000 policies would otherwise list pods
# 33 times a second.
LEAD_RELIST_SECONDS = 300.0
# A drifting model is refitted at most this often: a load no model predicts well must not
# keep a fitting worker busy with one policy.
MIN_REFIT_SECONDS = 300.0
# Live error above this many times the trust threshold triggers a refit.
DRIFT_FACTOR = 1.0
# A key refused a first fit keeps refits waiting for this long after it last asked (a policy
# deleted or edited meanwhile must not hold refits back for ever).
FIRST_FIT_PRIORITY_SECONDS = 600.0
# A fit that failed is retried only this long after, not on every tick: a history the models
# refuse would otherwise keep a worker busy and the log full (one failed fit a second).
FIT_RETRY_SECONDS = 300.0
# Fitting is background work: a worker at this niceness leaves the CPU to the event loop
# whenever a tick needs it, so a busy pool does not make ticks late.
FIT_NICENESS = 10


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


@dataclass(frozen=True)
class Fitted:
    """A fitted forecaster and when and on what it was fitted."""

    model: Forecaster
    recipe: Recipe
    fitted_at: float
    """Wall time when the fit finished (from the caller's clock)."""
    points: int
    """Observed points in the history it was fitted on."""
    seconds: float
    """How long the fit took, in the worker."""


def fit_forecaster(series: Series, recipe: Recipe) -> tuple[Forecaster, float]:
    """Fit an AutoForecaster on the recipe's history of ``series``, backtested and calibrated
    at the recipe's horizon; runs in a pool worker. Returns (model, seconds)."""
    # Imported here: the worker process pays for scikit-learn, the event loop's process need not.
    from foreseer.predictors.selecting import AutoForecaster, SelectionSettings

    # Calibrate only the quantile the policy provisions for (the loop never asks for
    # another): the same forecast at that level, and each model the operator holds keeps
    # one level of past forecasts instead of six (46 KB less at the default horizon).
    defaults = SelectionSettings()
    settings = dataclasses.replace(
        defaults, window=recipe.history,
        calibration=dataclasses.replace(defaults.calibration, levels=(recipe.quantile,)),
    )
    started = time.perf_counter()
    model = AutoForecaster(quantile=recipe.quantile, models=recipe.models,
                           horizon=recipe.horizon, settings=settings)
    return model.fit(series), time.perf_counter() - started


FitFn = Callable[[Series, Recipe], tuple[Forecaster, float]]


def import_models() -> None:
    """Import every model family in a pool worker, so the first real fit does not pay for it."""
    import foreseer.predictors.models
    import foreseer.predictors.selecting  # noqa: F401


def prepare_worker() -> None:
    """Runs first in every fitting worker: a lower CPU priority, and no pandas.

    The worker only fits on numpy arrays. scikit-learn imports pandas when it is
    installed (prometheus-api-client installs it), only to recognise pandas inputs; a
    module set to None in ``sys.modules`` fails to import, which scikit-learn takes as
    pandas not being installed: the worker holds 30 MB less.
    """
    os.nice(FIT_NICENESS)
    sys.modules.setdefault("pandas", None)  # type: ignore[arg-type]


def default_executor(settings: FittingSettings) -> Executor:
    """A process pool that spawns (never forks the operator's threads and event loop), of
    workers at a lower CPU priority than the loop."""
    return ProcessPoolExecutor(
        max_workers=settings.workers, mp_context=multiprocessing.get_context("spawn"),
        initializer=prepare_worker,
    )


class Fitter:
    """Fitted models per (namespace, policy, metric), in a bounded LRU, fitted off the loop."""

    def __init__(
        self,
        settings: FittingSettings,
        pool: Callable[[FittingSettings], Executor] = default_executor,
        fit: FitFn = fit_forecaster,
        on_fitted: Callable[[float], None] | None = None,
    ) -> None:
        self.settings = settings
        self._pool = pool
        self._executor = pool(settings)
        self._fit = fit
        self._on_fitted = on_fitted
        self._models: OrderedDict[Key, Fitted] = OrderedDict()
        self._pending: dict[Key, asyncio.Future[tuple[Forecaster, float]]] = {}
        self._waiting: dict[Key, float] = {}
        """Keys refused a first fit (the pool was busy), with when they last asked."""
        self._failed: dict[Key, tuple[float, str]] = {}
        """Keys whose last fit failed: when (the caller's clock) and why."""
        # One thread: a model is conditioned in place, so two threads must never share one.
        self._forecasting = ThreadPoolExecutor(1, "forecasting")
        self._conditioned: dict[Key, tuple[Forecaster, bytes]] = {}
        """The model and the digest of the history it was last conditioned on, per key."""

    def warm_up(self) -> None:
        """Start the workers now (spawning and importing scikit-learn takes seconds)."""
        for _ in range(self.settings.workers):
            self._executor.submit(import_models)

    def get(self, key: Key) -> Fitted | None:
        """The fitted model for ``key``, marked as recently used; None when there is none."""
        fitted = self._models.get(key)
        if fitted is not None:
            self._models.move_to_end(key)
        return fitted

    def fitting(self, key: Key) -> bool:
        return key in self._pending

    def needs_fit(
        self, key: Key, recipe: Recipe, now: float, retrain_seconds: float, drifting: bool
    ) -> str | None:
        """Why ``key`` should be (re)fitted now, or None when its model is fine."""
        if key in self._pending:
            return None
        failed = self._failed.get(key)
        if failed is not None and now - failed[0] < FIT_RETRY_SECONDS:
            return None
        fitted = self._models.get(key)
        if fitted is None:
            return "no model yet" if failed is None else "retrying a failed fit"
        if fitted.recipe != recipe:
            return "the policy changed"
        age = now - fitted.fitted_at
        if age >= retrain_seconds:
            return "retrain interval elapsed"
        if drifting and age >= MIN_REFIT_SECONDS:
            return "live forecast error drifted"
        return None

    def submit(self, key: Key, series: Series, recipe: Recipe, now: Callable[[], float],
               *, first: bool = False) -> bool:
        """Start fitting ``key`` in the pool unless it already is; returns at once, True when
        a fit of ``key`` is under way.

        At most one fit more than there are workers is in flight: a fit starts on the
        history of the tick that asks for it, not on one that waited minutes in a queue of
        a thousand (and the queue does not hold a thousand histories). The caller asks again
        on its next tick. A ``first`` fit (the key has no usable model) goes before refits:
        while one was refused, refits are refused too. ``now`` is read when the fit lands,
        so the model's age counts from then.
        """
        if key in self._pending:
            return True
        asked = time.monotonic()
        if len(self._pending) > self.settings.workers:
            if first:
                self._waiting[key] = asked
            return False
        # A worker is (nearly) free: forget the keys that stopped asking, then let a first
        # fit have it before any refit.
        self._waiting = {k: t for k, t in self._waiting.items()
                         if asked - t < FIRST_FIT_PRIORITY_SECONDS}
        if not first and self._waiting:
            return False
        self._waiting.pop(key, None)
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._executor, self._fit, series, recipe)
        except BrokenProcessPool:
            # A worker died (killed, out of memory): the pool refuses all work from then on.
            # A new pool keeps the policies forecasting; the lost fit is simply retried.
            logger.warning("the fitting pool broke (a worker died); starting a new one")
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = self._pool(self.settings)
            future = loop.run_in_executor(self._executor, self._fit, series, recipe)
        self._pending[key] = future
        points = series.observed()

        def landed(done: asyncio.Future[tuple[Forecaster, float]]) -> None:
            if self._pending.get(key) is done:
                del self._pending[key]
            if done.cancelled():
                return
            error = done.exception()
            if error is not None:
                logger.warning("fitting %s/%s metric %s failed: %s", *key, error)
                self._failed[key] = (now(), f"{type(error).__name__}: {error}"[:300])
                return
            self._failed.pop(key, None)
            model, seconds = done.result()
            self._store(key, Fitted(model, recipe, now(), points, seconds))
            if self._on_fitted is not None:
                self._on_fitted(seconds)

        future.add_done_callback(landed)
        return True

    def failure(self, key: Key) -> str | None:
        """Why the last fit of ``key`` failed, while it has not succeeded since."""
        failed = self._failed.get(key)
        return None if failed is None else failed[1]

    async def forecast(self, key: Key, fitted: Fitted, history: Series, steps: int,
                       quantile: float) -> tuple[float, float, str] | None:
        """`predict` off the event loop; the model is conditioned on ``history`` only when
        that history differs from the one it saw last (with a 1m step and a 30s interval,
        every other tick sees the same points)."""
        model = fitted.model
        digest = _digest(history)
        seen = self._conditioned.get(key)
        fresh = seen is None or seen[0] is not model or seen[1] != digest
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(
            self._forecasting, predict, model, history, steps, quantile, fresh)
        if fresh and result is not None and key in self._models:  # not forgotten meanwhile
            self._conditioned[key] = (model, digest)
        return result

    async def wait(self, key: Key) -> None:
        """Until the pending fit of ``key`` lands (for tests and benchmarks)."""
        future = self._pending.get(key)
        if future is not None:
            await asyncio.wait([future])

    def _store(self, key: Key, fitted: Fitted) -> None:
        self._models[key] = fitted
        self._models.move_to_end(key)
        while len(self._models) > self.settings.max_models:
            evicted, _ = self._models.popitem(last=False)
            self._conditioned.pop(evicted, None)
            logger.info("evicted the model of %s/%s metric %s (LRU is full)", *evicted)

    def forget(self, namespace: str, policy: str) -> None:
        """Drop the models and pending fits of a deleted policy."""
        for key in [k for k in (*self._models, *self._pending, *self._waiting, *self._failed)
                    if k[:2] == (namespace, policy)]:
            self._models.pop(key, None)
            self._conditioned.pop(key, None)
            self._waiting.pop(key, None)
            self._failed.pop(key, None)
            pending = self._pending.pop(key, None)
            if pending is not None:
                pending.cancel()

    def __len__(self) -> int:
        return len(self._models)

    def __contains__(self, key: object) -> bool:
        """Whether a fitted model is held for ``key`` (without marking it as used)."""
        return key in self._models

    def shutdown(self) -> None:
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._forecasting.shutdown(wait=False, cancel_futures=True)


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
        """Forget scored errors (after a refit the old model's errors say nothing)."""
        self.errors.clear()
        self.pending.clear()


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


def _digest(history: Series) -> bytes:
    """A fingerprint of a history: its grid and every value (NaN included)."""
    grid = np.array([history.start, history.step])
    return hashlib.blake2b(grid.tobytes() + history.values.tobytes(), digest_size=16).digest()


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


def _timestamp(text: Any) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def readiness_seconds(pods: Iterable[Mapping[str, Any]]) -> list[float]:
    """Seconds from creation to Ready for each ready pod (a Pod object as a dict).

    Only a pod's first Ready transition after creation counts: a pod that restarted
    later would otherwise inflate the lead time.
    """
    samples = []
    for pod in pods:
        created = _timestamp(pod.get("metadata", {}).get("creationTimestamp"))
        ready = _ready_condition(pod)
        if created is None or not ready or ready.get("status") != "True":
            continue
        became_ready = _timestamp(ready.get("lastTransitionTime"))
        if became_ready is not None and became_ready >= created:
            samples.append(became_ready - created)
    return samples


def _ready_condition(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    conditions = pod.get("status", {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == "Ready"), None)


def _is_ready(pod: Mapping[str, Any]) -> bool:
    ready = _ready_condition(pod)
    return ready is not None and ready.get("status") == "True"


@dataclass
class LeadTime:
    """The measured time a new replica takes to become ready, for ``horizon: auto``."""

    samples: deque[float] = field(default_factory=lambda: deque(maxlen=50))
    """Recent readiness durations, in seconds."""
    seen: set[str] = field(default_factory=set)
    """Pods already sampled (by uid), so one pod counts once."""
    listed: tuple[tuple[int, int], float, bool] | None = None
    """At the last listing: the target's (asked, created) replicas, when, and whether
    a pod was still becoming ready."""

    def due(self, replicas: tuple[int, int], now: float) -> bool:
        """Whether the pods are worth listing: never listed, the target's replicas moved,
        a pod was still becoming ready, or the last look is `LEAD_RELIST_SECONDS` old."""
        if self.listed is None:
            return True
        before, at, waiting = self.listed
        return waiting or before != replicas or now - at >= LEAD_RELIST_SECONDS

    def observe(self, pods: Sequence[Mapping[str, Any]], replicas: tuple[int, int],
                now: float) -> None:
        """Sample the pods that became ready; ``replicas`` and ``now`` are the target's
        (asked, created) replicas and the time of the listing, for `due`."""
        waiting = False
        for pod in pods:
            uid = pod.get("metadata", {}).get("uid") or pod.get("metadata", {}).get("name")
            if not uid or uid in self.seen:
                continue
            sample = readiness_seconds([pod])
            if sample:
                self.seen.add(uid)
                self.samples.append(sample[0])
            elif not _is_ready(pod):
                waiting = True
        self.listed = (replicas, now, waiting)
        # Bound the uid set too: only pods still around can be seen again.
        if len(self.seen) > 1000:
            self.seen = {
                p.get("metadata", {}).get("uid") or p.get("metadata", {}).get("name", "")
                for p in pods
            }

    def seconds(self) -> float:
        """A high percentile, not the mean: provisioning late costs more than early."""
        if not self.samples:
            return DEFAULT_LEAD_SECONDS
        return float(np.percentile(np.asarray(self.samples), 90))


def horizon_seconds(horizon: str, interval: float, lead: LeadTime) -> float:
    """The forecast horizon: the spec's duration, or for ``auto`` the lead time plus one
    interval (the decision may come up to one interval late)."""
    if horizon == "auto":
        return lead.seconds() + interval
    return parse_duration(horizon)
