"""The operator's everyday behaviour: Observe mode, and policies that do not affect each other."""

from __future__ import annotations

from collections.abc import Awaitable

import aiohttp
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
)

from foreseer.lab.waiting import until

pytestmark = pytest.mark.integration


async def test_observe_mode_publishes_the_recommendation_and_never_changes_replicas(
    stack: Stack,
) -> None:
    operator = await stack.one_policy(Level(350.0), replicas=1, mode="Observe")
    async with ReplicaRecorder(stack.emulator, "shop", "web") as recorder:

        def recommended() -> bool:
            final = (status(stack.emulator, "shop", "web").get("recommendation") or {})
            return final.get("final") == 4

        await until(recommended, timeout=30, what="a recommendation of 4 replicas")
        await until(lambda: condition(stack.emulator, "shop", "web", "Ready").get("status")
                    == "True", timeout=10, what="Ready=True")
        reason = status(stack.emulator, "shop", "web")["recommendation"]["reason"]
        assert "Observe mode" in reason
        # More ticks, still no change: the recommendation is published, never applied.
        ticks = operator.ticks("shop", "web")
        await until(lambda: operator.ticks("shop", "web") >= ticks + 5, timeout=20,
                    what="five more ticks")
    assert recorder.values() == [1]
    assert replicas(stack.emulator, "shop", "web") == 1
    assert not [e for e in events(stack.emulator, "shop", "web") if e["reason"] == "Scaled"]


async def test_two_policies_in_two_namespaces_scale_independently(stack: Stack) -> None:
    # Loads between multiples of the target: a forecast a hair above 300 must not read as 4.
    shop, blog = Level(250.0), Level(550.0)
    await stack.workload("web", "shop", replicas=1, load=shop)
    await stack.workload("web", "blog", replicas=1, load=blog)
    await stack.start_prometheus(load_query("web", "shop"), load_query("web", "blog"))
    await stack.operator()
    for namespace in ("shop", "blog"):
        await stack.apply(policy("web", namespace, "web", [
            metric("load", load_query("web", namespace), 100.0)]))

    await until(lambda: replicas(stack.emulator, "shop", "web") == 3, timeout=30,
                what="shop scaled to 3")
    await until(lambda: replicas(stack.emulator, "blog", "web") == 6, timeout=30,
                what="blog scaled to 6")

    async with ReplicaRecorder(stack.emulator, "shop", "web") as recorder:
        blog.value = 850.0
        await until(lambda: status(stack.emulator, "blog", "web").get("desiredReplicas") == 9,
                    timeout=30, what="blog decided 9")
        await until(lambda: replicas(stack.emulator, "blog", "web") == 9, timeout=10,
                    what="blog scaled to 9")
    assert recorder.values() == [3]
    assert status(stack.emulator, "shop", "web")["desiredReplicas"] == 3


async def test_metrics_and_health_are_served_and_a_deleted_policy_leaves_nothing_behind(
    stack: Stack,
) -> None:
    operator = await stack.one_policy(Level(250.0), replicas=1)
    await until(lambda: replicas(stack.emulator, "shop", "web") == 3, timeout=30,
                what="scaled to 3")
    base = f"http://127.0.0.1:{operator.runtime.metrics_port}"
    series = 'foreseer_final_replicas{namespace="shop",policy="web"} 3.0'
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/healthz") as response:
            assert response.status == 200
            assert (await response.json())["ready"] is True

        async def exposition() -> str:
            async with session.get(f"{base}/metrics") as response:
                return await response.text()

        await until(lambda: _contains(exposition(), series), timeout=10, what=series)
        text = await exposition()
        assert 'foreseer_scale_actions_total{direction="up",namespace="shop",policy="web"} 1.0' \
            in text
        assert 'foreseer_breaker_state{foreseer_breaker_state="Closed",namespace="shop"' in text

        key = ("shop", "web", "load")
        await until(lambda: operator.runtime.fitter.get(key) is not None, timeout=120,
                    what="a fitted model")
        await stack.emulator.delete_object(POLICIES, "shop", "web")
        await until(lambda: stack.emulator.read_object(POLICIES, "shop", "web") is None,
                    timeout=20, what="the policy's finalizer released")
        text = await exposition()
    assert 'policy="web"' not in text
    assert ("shop", "web") not in operator.runtime.memories
    assert operator.runtime.fitter.get(key) is None


async def _contains(text: Awaitable[str], part: str) -> bool:
    return part in await text
