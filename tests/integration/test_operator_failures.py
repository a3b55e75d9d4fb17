"""The failures autoscalers are known for: Prometheus outages, one broken metric, invalid
policies, and conflicting writes. None of them may cause a wrong scale-down."""

from __future__ import annotations

import math

import pytest
from operator_stack import (
    POLICIES,
    Level,
    ReplicaRecorder,
    Stack,
    condition,
    events,
    load_query,
    metric,
    policy,
    replicas,
    status,
    until_event,
)

from foreseer.lab.emulator import DEPLOYMENTS
from foreseer.lab.waiting import until

pytestmark = pytest.mark.integration

FAST_BREAKER = {"circuitBreaker": {"failureThreshold": 2, "minBackoff": "1s", "maxBackoff": "2s"}}


async def test_a_prometheus_outage_never_scales_down_and_the_policy_recovers(
    stack: Stack,
) -> None:
    await stack.one_policy(Level(250.0), replicas=1, guards=FAST_BREAKER)
    await until(lambda: replicas(stack.emulator, "shop", "web") == 3, timeout=30,
                what="scaled to 3 before the outage")

    async with ReplicaRecorder(stack.emulator, "shop", "web") as recorder:
        stack.prometheus.stop()
        await until(lambda: condition(stack.emulator, "shop", "web", "MetricsAvailable")
                    .get("status") == "False", timeout=30, what="MetricsAvailable=False")
        await until(lambda: (status(stack.emulator, "shop", "web").get("breaker") or {})
                    .get("state") == "Open", timeout=30, what="the breaker opened")
        missing = condition(stack.emulator, "shop", "web", "MetricsAvailable")
        assert missing["reason"] and "load" in missing["message"]
        assert condition(stack.emulator, "shop", "web", "Ready")["status"] == "False"

        await stack.start_prometheus(load_query("web", "shop"))
        await until(lambda: condition(stack.emulator, "shop", "web", "MetricsAvailable")
                    .get("status") == "True", timeout=40, what="MetricsAvailable=True again")
        await until(lambda: (status(stack.emulator, "shop", "web").get("breaker") or {})
                    .get("state") == "Closed", timeout=30, what="the breaker closed")
        await until(lambda: condition(stack.emulator, "shop", "web", "Ready")
                    .get("status") == "True", timeout=30, what="Ready=True again")
    assert recorder.values() == [3]
    await until_event(stack.emulator, "shop", "web", "MetricsMissing")


async def test_one_bad_metric_of_two_still_scales_up_on_the_healthy_one_and_never_down(
    stack: Stack,
) -> None:
    healthy = Level(350.0)
    await stack.workload("web", "shop", replicas=2, load=healthy)
    await stack.workload("nan", "shop", replicas=1, load=Level(math.nan))
    await stack.start_prometheus(load_query("web", "shop"))
    await stack.operator()
    await stack.apply(policy("web", "shop", "web", [
        metric("load", load_query("web", "shop"), 100.0),
        metric("empty", load_query("absent", "shop"), 100.0),
        metric("nan", load_query("nan", "shop"), 100.0),
    ], behavior={"scaleDown": {"stabilizationWindowSeconds": 0}}))  # only the outage guard holds

    await until(lambda: replicas(stack.emulator, "shop", "web") == 4, timeout=30,
                what="scaled up to 4 on the healthy metric")
    # The status is written after the scale, in the same tick.
    await until(lambda: condition(stack.emulator, "shop", "web", "MetricsAvailable"),
                timeout=10, what="the MetricsAvailable condition")
    missing = condition(stack.emulator, "shop", "web", "MetricsAvailable")
    assert missing["status"] == "False"
    assert "empty" in missing["message"] and "nan" in missing["message"]

    async with ReplicaRecorder(stack.emulator, "shop", "web") as recorder:
        healthy.value = 80.0  # alone, the healthy metric would ask for 1 replica

        def saw_the_drop() -> bool:
            recommendation = status(stack.emulator, "shop", "web").get("recommendation") or {}
            return recommendation.get("reactive") == 1

        await until(saw_the_drop, timeout=30, what="the decision saw the lower load")
        recommendation = status(stack.emulator, "shop", "web")["recommendation"]
        assert "metricsOutage" in recommendation["limitedBy"]
        assert recommendation["final"] == 4
    assert recorder.values() == [4]


async def test_invalid_policies_get_a_condition_and_an_event_while_others_keep_working(
    stack: Stack,
) -> None:
    await stack.workload("web", "shop", replicas=1, load=Level(250.0))
    await stack.start_prometheus(load_query("web", "shop"))
    await stack.operator()
    good = metric("load", load_query("web", "shop"), 100.0)
    await stack.apply(policy("bad-query", "shop", "web", [metric("load", "sum(rate(", 100.0)],
                             mode="Observe"))
    await stack.apply(policy("no-target", "shop", "missing", [good]))
    # min > max cannot pass the CRD's CEL rule; written straight into the store, as an
    # object from before the rule existed would be.
    await stack.apply(policy("min-max", "shop", "web", [good], minReplicas=5, maxReplicas=2))
    await stack.apply(policy("web", "shop", "web", [good]))

    await until(lambda: replicas(stack.emulator, "shop", "web") == 3, timeout=30,
                what="the valid policy scaled its target")

    await until(lambda: condition(stack.emulator, "shop", "min-max", "Ready")
                .get("reason") == "InvalidSpec", timeout=20, what="min > max reported")
    message = condition(stack.emulator, "shop", "min-max", "Ready")["message"]
    assert "minReplicas (5) must not exceed maxReplicas (2)" in message
    await until_event(stack.emulator, "shop", "min-max", "InvalidSpec")

    await until(lambda: condition(stack.emulator, "shop", "no-target", "Ready")
                .get("reason") == "TargetNotFound", timeout=20, what="missing target reported")
    assert "missing" in condition(stack.emulator, "shop", "no-target", "Ready")["message"]
    await until_event(stack.emulator, "shop", "no-target", "TargetNotFound")

    await until(lambda: condition(stack.emulator, "shop", "bad-query", "MetricsAvailable")
                .get("status") == "False", timeout=20, what="the bad query reported")
    broken = condition(stack.emulator, "shop", "bad-query", "MetricsAvailable")
    assert "parse error" in broken["message"]
    await until_event(stack.emulator, "shop", "bad-query", broken["reason"])

    # The broken policies never touched the shared target beyond what the valid one decided.
    assert all(e["reason"] != "Scaled" for name in ("bad-query", "no-target", "min-max")
               for e in events(stack.emulator, "shop", name))
    assert stack.emulator.read_object(POLICIES, "shop", "web") is not None


async def test_a_conflict_on_the_scale_patch_is_retried_and_the_decision_kept(
    stack: Stack,
) -> None:
    fault = stack.emulator.fail_next("PATCH", DEPLOYMENTS, subresource="scale", times=2)
    await stack.one_policy(Level(250.0), replicas=1)

    await until(lambda: replicas(stack.emulator, "shop", "web") == 3, timeout=30,
                what="scaled to 3 despite two conflicts")
    assert fault.hits == 2
    await until(lambda: status(stack.emulator, "shop", "web").get("desiredReplicas") == 3,
                timeout=10, what="the decision in status")
    assert status(stack.emulator, "shop", "web")["lastScaleTime"]
    assert (await until_event(stack.emulator, "shop", "web", "Scaled")).count("Scaled") == 1
