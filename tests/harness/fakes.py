"""Frozen-clock stand-ins for the operator's tests (as Kopf tests its daemons on a frozen
loop): a wall clock that moves only when told, and a Prometheus that answers what it is told.
They replace only what is outside the operator; everything of its own runs for real."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from foreseer.lab.waiting import until
from foreseer.operator.deciding import MetricOutage
from foreseer.operator.fitting import Fitter, Key
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


class FakeLeases:
    """The API server's Leases: stored bodies with resourceVersions, and a 409 Conflict for a
    create of an existing name or a write carrying a stale resourceVersion, as a real one.
    ``down`` makes every call fail as an unreachable server does."""

    def __init__(self) -> None:
        self.bodies: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.down = False

    def _check(self) -> None:
        from foreseer.operator.clusters import ClusterError

        if self.down:
            raise ClusterError("the API server did not answer")

    def _stored(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self.version += 1
        stored = copy.deepcopy(dict(body))
        stored["metadata"] = {**stored["metadata"], "resourceVersion": str(self.version)}
        self.bodies[stored["metadata"]["name"]] = stored
        return copy.deepcopy(stored)

    async def list_leases(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        self._check()
        key, value = selector.split("=")
        return [copy.deepcopy(b) for b in self.bodies.values()
                if b["metadata"].get("labels", {}).get(key) == value]

    async def create_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        from foreseer.operator.clusters import Conflict

        self._check()
        if body["metadata"]["name"] in self.bodies:
            raise Conflict("already exists", 409)
        return self._stored(body)

    async def replace_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        from foreseer.operator.clusters import ClusterError, Conflict

        self._check()
        current = self.bodies.get(body["metadata"]["name"])
        if current is None:
            raise ClusterError("not found", 404)
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise Conflict("the object has been modified", 409)
        return self._stored(body)

    async def delete_lease(self, namespace: str, name: str) -> None:
        self._check()
        self.bodies.pop(name, None)


async def settled(fitter: Fitter, key: Key, timeout: float = 60.0) -> None:
    """Until no fit of ``key`` is under way (it landed or failed): ``may_fit`` at the end of
    time refuses only while one is pending."""
    await until(lambda: fitter.may_fit(key, math.inf), timeout, what=f"the fit of {key}",
                interval=0.01)
