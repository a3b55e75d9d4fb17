"""What the scenarios share: their Deployments and loads, and the running stack."""

from __future__ import annotations

from dataclasses import dataclass

from clusters import Cluster
from metering import Level, Metering, Wave
from releases import Operator, Release

WAVE = Wave()
"""The periodic load of the scale-up scenario."""
HIGH, LOW = 200.0, 40.0
"""Loads of the hand-set workloads: with a target of 20 per replica, 10 and 2 replicas."""


@dataclass(frozen=True)
class Scenario:
    """Names and loads of one scenario's Deployment (and policy, by convention)."""

    name: str
    replicas: int
    load: Level | Wave


SCENARIOS = {s.name: s for s in [
    Scenario("wave", 2, WAVE),
    Scenario("outage", 2, Level(HIGH)),
    Scenario("observe", 2, Level(HIGH)),
]}


@dataclass
class Stack:
    """Everything the scenarios share: the namespace, the workloads, Prometheus, the release
    and its running operator."""

    cluster: Cluster
    namespace: str
    metering: Metering
    release: Release
    operator: Operator

    def load(self, name: str) -> Level:
        load = SCENARIOS[name].load
        assert isinstance(load, Level)
        return load
