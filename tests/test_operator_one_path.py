"""One forecast path: the operator's handler and the simulator's foreseer Auto, given the same
trace, take the same decision at every tick (both call `forecasting.forecast_step`, fit with
`fit_recipe` and decide with `decide()`; only their shells differ)."""

from __future__ import annotations

from typing import Any

import numpy as np
from test_operator_cycle import FakeCluster, body, inline_pool

from foreseer.operator.cycle import tick
from foreseer.operator.fitting import Fitter
from foreseer.operator.forecasting import history_grid
from foreseer.operator.runtime import Runtime
from foreseer.operator.settings import FittingSettings, Settings
from foreseer.operator.specs import ScalingPolicySpec
from foreseer.predictors.series import Series
from foreseer.simulator.engines import Engine
from foreseer.simulator.policies import Foreseer
from foreseer.simulator.simulating import Tick
from harness.fakes import settled

STEP = 60.0
START = 1_800_000_000.0 - 86400.0  # a day of history before the first decision
FORECAST = {"step": "1m", "history": "1d", "horizon": "5m", "retrainInterval": "1h",
            "models": ["naive", "seasonal_naive", "ewma"]}


def scrapes(points: int) -> np.ndarray:
    """A daily load with noise and a surge, one scrape a minute."""
    t = np.arange(points) * STEP
    rng = np.random.default_rng(7)
    load = 600 + 400 * np.sin(2 * np.pi * t / 86400.0) + rng.normal(0, 30, points)
    load[-200:-120] += 500
    return np.maximum(load, 0.0)


class ScrapedPrometheus:
    """Prometheus holding one scrape a minute of ``values``, answering up to the clock."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values
        self.seen = 0
        """Scrapes taken so far (the newest is the current value)."""

    async def current(self, query: str, now: float, *, tenant: str | None = None) -> float:
        return float(self.values[self.seen - 1])

    async def history(self, key: tuple[str, str, str], query: str, *, step: float,
                      window: float, now: float, tenant: str | None = None) -> Series | None:
        first, points = history_grid(now, step, window)
        index = np.floor((first + step * np.arange(points) - START) / STEP + 1e-9).astype(int)
        seen = (index >= 0) & (index < self.seen)
        values = np.full(points, np.nan)
        values[seen] = self.values[index[seen]]
        return Series(first, step, values)

    def forget(self, namespace: str, name: str) -> None:
        pass

    async def close(self) -> None:
        pass


async def test_the_handler_and_the_simulator_take_the_same_decision_at_every_tick() -> None:
    ticks = 300  # five hours at one decision a minute: five hourly refits
    values = scrapes(1440 + ticks)
    policy = body(interval="1m", forecast=FORECAST)
    spec = ScalingPolicySpec.model_validate(policy["spec"])

    class Clock:
        now = START

        def __call__(self) -> float:
            return self.now

    clock, cluster, source = Clock(), FakeCluster(replicas=6), ScrapedPrometheus(values)
    fitter = Fitter(FittingSettings(), pool=inline_pool)
    runtime = Runtime(settings=Settings(), prometheus=source,  # type: ignore[arg-type]
                      cluster=cluster, fitter=fitter, clock=clock)  # type: ignore[arg-type]
    simulated = Foreseer(Engine(spec), lead=120.0)
    operator_said: list[int] = []
    simulator_said: list[int] = []
    replicas = 6
    forecasts = 0
    try:
        for k in range(1440, 1440 + ticks):
            now = START + k * STEP
            source.seen = k + 1
            clock.now = now
            history = Series(START, STEP, values[: k + 1])
            simulator_said.append(simulated.decide(Tick(now, history, replicas, replicas)))
            replicas = simulator_said[-1]
            await tick(runtime, policy)
            await settled(fitter, ("shop", "web", "rps"))  # a fit lands before the next tick
            operator_said.append(cluster.replicas)
            status: dict[str, Any] = runtime.memory("shop", "web").state.model_dump(  # type: ignore[union-attr]
                by_alias=True, exclude_none=True)
            forecasts += status.get("forecast", {}).get("trusted", False)
    finally:
        fitter.shutdown()
    assert forecasts > ticks // 2  # a trusted forecast, not only the reactive floor
    assert len(set(operator_said)) > 3  # and the decisions moved
    assert operator_said == simulator_said
