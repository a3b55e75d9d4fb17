"""The operator's loop on a real API server: predictive scale-up ahead of a peak, no
scale-down during a Prometheus outage, and Observe mode. Each scenario launches its own stack
(namespace, Deployment, load, Prometheus, release, operator); replicas and status are read
through the API server."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import pytest
from clusters import eventually
from metering import Level
from policies import TARGET_PER_REPLICA, policy
from stacks import HIGH, LOW, WAVE, Launch, Scenario, Stack

pytestmark = pytest.mark.e2e

PEAK_REPLICAS = math.ceil(WAVE.high / TARGET_PER_REPLICA)
HIGH_REPLICAS = math.ceil(HIGH / TARGET_PER_REPLICA)
LOW_REPLICAS = math.ceil(LOW / TARGET_PER_REPLICA)
HORIZON = 180.0
"""The scale-up policy's forecast horizon (seconds): how far ahead it provisions."""
WARM_UP = 300.0
"""From applying the policy to the peak: the first range query and fit (tens of seconds on
two cores), then a whole horizon of lead, with margin."""


def apply(stack: Stack, manifest: dict[str, Any]) -> None:
    """`kubectl apply` a policy into the test's namespace; the stack deletes it afterwards."""
    stack.cluster.apply(manifest)


def sample(read: Callable[[], int], seconds: float, interval: float = 2.0) -> list[int]:
    """`read()` every `interval` for `seconds`: what a watcher of the cluster would see."""
    values, end = [read()], time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(interval)
        values.append(read())
    return values


def fresh(stack: Stack, name: str) -> int:
    """The precondition of a scenario, read before its policy exists: the test's own fresh
    Deployment at the replicas it was created with (waited for with a deadline, not assumed)."""
    cluster, namespace = stack.cluster, stack.namespace
    assert cluster.policy(namespace, name) is None, "the policy must not exist yet"
    created = stack.scenarios[name].replicas
    eventually(lambda: cluster.replicas(namespace, name) == created, 60,
               f"Deployment {name} at its {created} replicas")
    return created


def test_the_operator_scales_up_ahead_of_a_forecast_peak(launch: Launch) -> None:
    stack = launch(Scenario("wave", LOW_REPLICAS, WAVE))
    namespace, cluster, name = stack.namespace, stack.cluster, "wave"
    assert fresh(stack, name) == LOW_REPLICAS
    # Apply between peaks and at least WARM_UP before the next one: the current load then
    # asks for LOW_REPLICAS only, no peak is within the horizon yet (the operator has no
    # reason to act at once), and the next peak is the one waited for, so any scale-up before
    # it can only come from the forecast.
    earliest, latest = WAVE.width, WAVE.period - WARM_UP
    assert earliest < latest, "the wave leaves no moment to apply the policy"
    eventually(lambda: earliest <= time.time() % WAVE.period <= latest, WAVE.period + 10,
               f"a moment between peaks, {WARM_UP:.0f}s or more before the next")
    applied = time.time()
    peak = WAVE.next_peak(applied)
    assert peak - applied >= WARM_UP - 5 and peak - applied > HORIZON
    apply(stack, policy(namespace, name, mode="Auto", forecast={
        "history": "3h", "step": "10s", "horizon": f"{HORIZON:.0f}s", "quantile": 0.9}))

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


def test_no_scale_down_while_prometheus_is_stopped(launch: Launch) -> None:
    stack = launch(Scenario("outage", LOW_REPLICAS, Level(HIGH)))
    namespace, cluster, name = stack.namespace, stack.cluster, "outage"
    prometheus = stack.metering.prometheus  # this test's own: stopping it affects no other
    assert prometheus is not None
    load = stack.load(name)
    fresh(stack, name)
    # Scale-down as fast as the HPA allows, so that acting on missing data would show at once;
    # a short breaker backoff, so that recovery after the outage is quick.
    apply(stack, policy(
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


def test_observe_mode_recommends_but_never_scales(launch: Launch) -> None:
    stack = launch(Scenario("observe", LOW_REPLICAS, Level(HIGH)))
    namespace, cluster, name = stack.namespace, stack.cluster, "observe"
    before = fresh(stack, name)
    apply(stack, policy(namespace, name, mode="Observe"))
    recommendation = eventually(
        lambda: (cluster.status(namespace, name).get("recommendation") or {}).get("reactive")
        == HIGH_REPLICAS and cluster.status(namespace, name)["recommendation"],
        120, "the recommendation in status")
    # The HPA's rate limits apply to the would-be scale as in Auto; it is above the current.
    assert recommendation["final"] > before, recommendation
    assert "Observe" in recommendation["reason"], recommendation
    seen = sample(lambda: cluster.replicas(namespace, name), seconds=30)
    assert set(seen) == {before}, f"Observe mode changed replicas: {seen}"
