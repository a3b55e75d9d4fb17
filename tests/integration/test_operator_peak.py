"""Scaling ahead of a peak: with a week of history of a daily-periodic load, the operator has
the replicas a peak needs ready when it arrives; the reactive mode scales only once it is there.

Time is compressed so the scenario runs in about four minutes: a "day" lasts 20 minutes,
sampled every 5 seconds, so seven days of history are 1680 points, backfilled into a real
Prometheus that then scrapes the live exporter continuing the same curve.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable

import pytest
from operator_stack import (
    ReplicaRecorder,
    Stack,
    create_deployment,
    load_query,
    metric,
    policy,
    replicas,
    status,
)

from foreseer.lab.emulator import Emulator
from foreseer.lab.exporter import Workload
from foreseer.lab.prometheus import openmetrics
from foreseer.lab.waiting import until
from foreseer.lab.workloads import DeploymentController, ready_replicas

pytestmark = pytest.mark.integration

DAY = 1200.0
"""The compressed day, in seconds."""
STEP = 5.0
# A two-minute rise to a five-minute plateau: 20s before the plateau the load needs 7
# replicas, at the plateau 8.
BASE, PEAK, RAMP, PLATEAU = 100.0, 400.0, 120.0, 300.0
TARGET = 50.0
NEEDED = math.ceil(PEAK / TARGET)  # 8 replicas at the peak, 2 at the base
READY_AFTER = 20.0
"""Seconds a new pod takes to become Ready: the lead time the operator must measure."""
LEAD_IN = 200.0
"""Seconds from the start of the test to the next peak: start-up, the first fit, some ticks."""


@pytest.fixture
async def deployments(emulator: Emulator) -> AsyncIterator[DeploymentController]:
    """This module's pods take READY_AFTER seconds to become Ready."""
    async with DeploymentController(emulator, ready_after=READY_AFTER) as controller:
        yield controller


def daily_peak(peak_at: float) -> Callable[[float], float]:
    """BASE, ramping linearly over RAMP seconds up to a PLATEAU of PEAK starting at
    ``peak_at + k * DAY``, then ramping down again."""

    def load(t: float) -> float:
        phase = (t - peak_at) % DAY
        if phase < PLATEAU:
            return PEAK
        if phase < PLATEAU + RAMP:
            return PEAK - (PEAK - BASE) * (phase - PLATEAU) / RAMP
        if phase > DAY - RAMP:
            return BASE + (PEAK - BASE) * (phase - (DAY - RAMP)) / RAMP
        return BASE

    return load


async def test_the_operator_scales_up_ahead_of_a_daily_peak_and_reactive_only_after(
    stack: Stack,
) -> None:
    now = time.time()
    peak_at = now + LEAD_IN
    load = daily_peak(peak_at)
    history_start = now - 7 * DAY
    namespaces = {"auto": "Auto", "reactive": "Reactive"}
    texts = []
    for namespace in namespaces:
        await create_deployment(stack.emulator, "web", namespace, replicas=2)
        workload = Workload("web", namespace, load,
                            ready_replicas(stack.emulator, namespace, "web"))
        stack.exporter.workloads.append(workload)
        # The labels the live scrape adds too, so that past and present are one series.
        labels = {"app": "web", "namespace": namespace, "job": "exporter",
                  "instance": stack.exporter.target}
        texts.append(openmetrics("workload_load", labels,
                                 workload.history(history_start, now, STEP)))
    await asyncio.to_thread(stack.prometheus.backfill, *texts)
    await stack.start_prometheus(*(load_query("web", ns) for ns in namespaces))
    await stack.operator()

    loop = asyncio.get_running_loop()
    peak_loop_time = peak_at - time.time() + loop.time()
    async with (ReplicaRecorder(stack.emulator, "auto", "web") as auto,
                ReplicaRecorder(stack.emulator, "reactive", "web") as reactive):
        for namespace, mode in namespaces.items():
            await stack.apply(policy(
                "web", namespace, "web", [metric("load", load_query("web", namespace),
                                                 TARGET)],
                mode=mode, maxReplicas=20,
                forecast={"history": "140m", "step": "5s", "horizon": "auto"},
                behavior={"scaleUp": {"policies": [
                    {"type": "Pods", "value": 20, "periodSeconds": 15}]}}))

        def trusted() -> bool:
            forecast = status(stack.emulator, "auto", "web").get("forecast") or {}
            return bool(forecast.get("trusted"))

        await until(trusted, timeout=LEAD_IN - RAMP - READY_AFTER,
                    what="a trusted forecast before the peak")
        await until(lambda: reactive.at(loop.time()) >= NEEDED, timeout=LEAD_IN + 30,
                    what="the reactive policy reaching the peak's replicas")
        await until(lambda: loop.time() >= peak_loop_time, timeout=LEAD_IN,
                    what="the peak")

    ready_by = peak_loop_time - READY_AFTER
    assert auto.at(ready_by) >= NEEDED, auto.changes
    assert reactive.at(ready_by) < NEEDED, reactive.changes
    assert replicas(stack.emulator, "auto", "web") >= NEEDED
    forecast = status(stack.emulator, "auto", "web")["forecast"]
    assert forecast["value"] >= PEAK * 0.9
