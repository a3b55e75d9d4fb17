"""Frozen-clock stand-ins for the operator's tests (as Kopf tests its daemons on a frozen
loop): a wall clock that moves only when told, and a Prometheus that answers what it is told.
They replace only what is outside the operator; everything of its own runs for real."""

from __future__ import annotations

import numpy as np

from foreseer.operator.deciding import MetricOutage
from foreseer.predictors.series import Series

T0 = 1_800_000_000.0


class FrozenClock:
    """Wall time that moves only when a test sets `now`."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class FakeSource:
    """Prometheus: a current value per query (or an outage, or an exception) and a history."""

    def __init__(self, value: float | MetricOutage | Exception = 300.0) -> None:
        self.value = value
        self.history_values: np.ndarray | None = None

    async def current(self, query: str, now: float, *,
                      tenant: str | None = None) -> float | MetricOutage:
        if isinstance(self.value, Exception):
            raise self.value
        return self.value

    async def history(self, key: tuple[str, str, str], query: str, *, step: float,
                      window: float, now: float, tenant: str | None = None) -> Series | None:
        if self.history_values is None:
            return None
        return Series(now - step * len(self.history_values), step, self.history_values)

    def forget(self, namespace: str, name: str) -> None:
        pass

    async def close(self) -> None:
        pass
