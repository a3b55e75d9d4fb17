"""The operator's loop on a real API server: predictive scale-up ahead of a peak, no
scale-down during a Prometheus outage, and Observe mode. Each scenario scales its own
Deployment; replicas and status are read through the API server."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pytest
from clusters import eventually
from policies import TARGET_PER_REPLICA, policy
from stacks import HIGH, LOW, WAVE, Stack

pytestmark = pytest.mark.e2e

Apply = Callable[[dict[str, Any]], None]

PEAK_REPLICAS = math.ceil(WAVE.high / TARGET_PER_REPLICA)
HIGH_REPLICAS = math.ceil(HIGH / TARGET_PER_REPLICA)
LOW_REPLICAS = math.ceil(LOW / TARGET_PER_REPLICA)
HORIZON = 180.0
"""The scale-up policy's forecast horizon (seconds): how far ahead it provisions."""
WARM_UP = 300.0
"""From applying the policy to the peak: the first range query and fit (tens of seconds on
two cores), then a whole horizon of lead, with margin."""


def sample(read: Callable[[], int], seconds: float, interval: float = 2.0) -> list[int]:
    """`read()` every `interval` for `seconds`: what a watcher of the cluster would see."""
    values, end = [read()], time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(interval)
        values.append(read())
    return values


def test_the_operator_scales_up_ahead_of_a_forecast_peak(stack: Stack,
                                                        apply_policy: Apply) -> None:
    namespace, cluster, name = stack.namespace, stack.cluster, "wave"
    # Start between peaks, so the current load never asks for more than LOW_REPLICAS before
    # the peak we wait for: any scale-up before it can only come from the forecast.
    eventually(lambda: time.time() % WAVE.period >= WAVE.width, WAVE.width + 10,
               "the current peak to end")
    apply_policy(policy(namespace, name, mode="Auto", forecast={
        "history": "3h", "step": "10s", "horizon": f"{HORIZON:.0f}s", "quantile": 0.9}))
    peak = WAVE.next_peak(time.time() + WARM_UP)
    assert cluster.replicas(namespace, name) == LOW_REPLICAS

    eventually(lambda: cluster.replicas(namespace, name) >= PEAK_REPLICAS,
               timeout=max(1.0, peak - 20 - time.time()),
               what=f"{PEAK_REPLICAS} replicas before the peak at {time.ctime(peak)}",
               interval=2.0)
    assert time.time() < peak, "the scale-up came with the peak, not ahead of it"
    assert WAVE(time.time()) == WAVE.low  # the load itself still needs LOW_REPLICAS

    status = cluster.status(namespace, name)
    assert status["forecast"]["trusted"] is True, status
    assert status["recommendation"]["reactive"] == LOW_REPLICAS, status
    assert status["recommendation"]["predictive"] >= PEAK_REPLICAS, status
    assert cluster.policy_events(namespace, name), "every scale posts an Event"


def test_no_scale_down_while_prometheus_is_stopped(stack: Stack, apply_policy: Apply) -> None:
    namespace, cluster, name = stack.namespace, stack.cluster, "outage"
    prometheus = stack.metering.prometheus
    assert prometheus is not None
    load = stack.load(name)
    # Scale-down as fast as the HPA allows, so that acting on missing data would show at once;
    # a short breaker backoff, so that recovery after the outage is quick.
    apply_policy(policy(
        namespace, name, mode="Reactive",
        behavior={"scaleDown": {"stabilizationWindowSeconds": 0, "policies": [
            {"type": "Percent", "value": 100, "periodSeconds": 15}]}},
        guards={"circuitBreaker": {"minBackoff": "10s", "maxBackoff": "30s"}}))
    eventually(lambda: cluster.replicas(namespace, name) >= HIGH_REPLICAS, 180,
               f"the reactive scale-up to {HIGH_REPLICAS} replicas")

    prometheus.stop()  # first: Prometheus must not see the low load before the outage
    load.value = LOW
    try:
        unavailable = eventually(
            lambda: cluster.condition(namespace, name, "MetricsAvailable").get("status")
            == "False" and cluster.condition(namespace, name, "MetricsAvailable"),
            120, "MetricsAvailable=False during the outage")
        assert unavailable["reason"], unavailable
        eventually(lambda: cluster.status(namespace, name).get("breaker", {}).get("state")
                   == "Open", 120, "the breaker to open")
        seen = sample(lambda: cluster.replicas(namespace, name), seconds=60)
        assert min(seen) >= HIGH_REPLICAS, f"scaled down during the outage: {seen}"
    finally:
        prometheus.start()

    eventually(lambda: cluster.condition(namespace, name, "MetricsAvailable").get("status")
               == "True", 240, "MetricsAvailable=True after the outage")
    # Recovered, the same policy now acts on the low load: the outage alone held it.
    eventually(lambda: cluster.replicas(namespace, name) == LOW_REPLICAS, 240,
               f"the scale-down to {LOW_REPLICAS} replicas after the outage")


def test_observe_mode_recommends_but_never_scales(stack: Stack, apply_policy: Apply) -> None:
    namespace, cluster, name = stack.namespace, stack.cluster, "observe"
    before = cluster.replicas(namespace, name)
    apply_policy(policy(namespace, name, mode="Observe"))
    recommendation = eventually(
        lambda: (cluster.status(namespace, name).get("recommendation") or {}).get("reactive")
        == HIGH_REPLICAS and cluster.status(namespace, name)["recommendation"],
        120, "the recommendation in status")
    # The HPA's rate limits apply to the would-be scale as in Auto; it is above the current.
    assert recommendation["final"] > before, recommendation
    assert "Observe" in recommendation["reason"], recommendation
    seen = sample(lambda: cluster.replicas(namespace, name), seconds=30)
    assert set(seen) == {before}, f"Observe mode changed replicas: {seen}"
