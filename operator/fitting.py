"""Model lifecycle: fit each policy's forecasters off the event loop and keep them in a
bounded LRU.

Fitting runs in a process pool (scikit-learn fits hold the GIL); a tick never waits
for a fit: it uses the model it has, or none (cold start, so Auto acts as Reactive)
until the first fit lands. A tick's forecast step (`foreseer.operator.forecasting`:
conditioning the model on the newest history, then predicting) takes milliseconds of
numpy, so it runs in one thread beside the event loop, and the model is conditioned only
when its history has changed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import multiprocessing
import os
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

import numpy as np

from foreseer.operator.forecasting import FIT_RETRY_SECONDS, Fitted, Recipe, fit_recipe
from foreseer.operator.settings import FittingSettings
from foreseer.predictors.forecasts import Forecaster
from foreseer.predictors.series import Series

logger = logging.getLogger(__name__)

Key = tuple[str, str, str]
"""(namespace, policy, metric)."""

T = TypeVar("T")

# A key refused a first fit keeps refits waiting for this long after it last asked (a policy
# deleted or edited meanwhile must not hold refits back for ever).
FIRST_FIT_PRIORITY_SECONDS = 600.0
# Fitting is background work: a worker at this niceness leaves the CPU to the event loop
# whenever a tick needs it, so a busy pool does not make ticks late.
FIT_NICENESS = 10


def fit_forecaster(series: Series, recipe: Recipe) -> tuple[Forecaster, float]:
    """`fit_recipe` in a pool worker, timed. Returns (model, seconds)."""
    started = time.perf_counter()
    model = fit_recipe(series, recipe)
    return model, time.perf_counter() - started


FitFn = Callable[[Series, Recipe], tuple[Forecaster, float]]


def import_models() -> None:
    """Import every model family in a pool worker, so the first real fit does not pay for it."""
    import foreseer.predictors.models
    import foreseer.predictors.selecting  # noqa: F401


def prepare_worker() -> None:
    """Runs first in every fitting worker: a lower CPU priority, and no pandas.

    The worker only fits on numpy arrays. scikit-learn imports pandas when it is
    installed (the bench extra installs it), only to recognise pandas inputs; a
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
        self._waiting: dict[Key, tuple[float, float]] = {}
        """Keys waiting for a first fit, with when they last asked and their urgency."""
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

    def may_fit(self, key: Key, now: float) -> bool:
        """Whether a fit of ``key`` may start: none is under way, and the last one did not
        fail less than `FIT_RETRY_SECONDS` ago."""
        if key in self._pending:
            return False
        failed = self._failed.get(key)
        return failed is None or now - failed[0] >= FIT_RETRY_SECONDS

    def submit(self, key: Key, series: Series, recipe: Recipe, now: Callable[[], float],
               *, first: bool = False, urgency: float = 0.0) -> bool:
        """Start fitting ``key`` in the pool unless it already is; returns at once, True when
        a fit of ``key`` is under way.

        At most one fit more than there are workers is in flight: a fit starts on the
        history of the tick that asks for it, not on one that waited minutes in a queue of
        a thousand (and the queue does not hold a thousand histories). The caller asks again
        on its next tick. A ``first`` fit (the key has no usable model) goes before refits:
        while one waits, refits are refused. Among first fits (a cold start, a shard taken
        over), the most ``urgent`` waiting one goes first (`forecasting.urgency`: a rising
        load needs its forecast before a flat one). ``now`` is read when the fit lands, so
        the model's age counts from then.
        """
        if key in self._pending:
            return True
        asked = time.monotonic()
        if first:
            self._waiting[key] = (asked, urgency)
        if len(self._pending) > self.settings.workers:
            return False
        # A worker is (nearly) free: forget the keys that stopped asking, then let the most
        # urgent first fit have it, before any refit.
        self._waiting = {k: w for k, w in self._waiting.items()
                         if asked - w[0] < FIRST_FIT_PRIORITY_SECONDS}
        if not first and self._waiting:
            return False
        if first and any(w[1] > urgency for k, w in self._waiting.items() if k != key):
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
            self.put(key, Fitted(model, recipe, now(), points, seconds))
            if self._on_fitted is not None:
                self._on_fitted(seconds)

        future.add_done_callback(landed)
        return True

    def failure(self, key: Key) -> str | None:
        """Why the last fit of ``key`` failed, while it has not succeeded since."""
        failed = self._failed.get(key)
        return None if failed is None else failed[1]

    async def forecast(self, key: Key, fitted: Fitted | None, history: Series,
                       step: Callable[[bool], T]) -> T:
        """``step(condition)`` (a tick's forecast step with ``fitted``) in the forecasting
        thread; ``condition`` is False when the model was last conditioned on this very
        history (with a 1m step and a 30s interval, every other tick sees the same points)."""
        digest = _digest(history)
        seen = self._conditioned.get(key)
        model = fitted.model if fitted is not None else None
        fresh = model is not None and (seen is None or seen[0] is not model or seen[1] != digest)
        result = await asyncio.get_running_loop().run_in_executor(self._forecasting, step, fresh)
        if fresh and model is not None and key in self._models:  # not forgotten meanwhile
            self._conditioned[key] = (model, digest)
        return result

    def put(self, key: Key, fitted: Fitted) -> None:
        """Hold ``fitted`` for ``key`` (a fit that landed, or a model read from the store),
        evicting the least recently used beyond ``max_models``."""
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

    def shutdown(self) -> None:
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._forecasting.shutdown(wait=False, cancel_futures=True)


def _digest(history: Series) -> bytes:
    """A fingerprint of a history: its grid and every value (NaN included)."""
    grid = np.array([history.start, history.step])
    return hashlib.blake2b(grid.tobytes() + history.values.tobytes(), digest_size=16).digest()


