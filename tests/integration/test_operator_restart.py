"""A restarted operator decides exactly as the old one would have: the state is in status."""

from __future__ import annotations

import asyncio

import pytest
from operator_stack import (
    Level,
    ReplicaRecorder,
    Stack,
    replicas,
    status,
    until_event,
)

from foreseer.lab.waiting import until

pytestmark = pytest.mark.integration

WINDOW = 20.0


async def test_a_restart_mid_stabilization_window_makes_no_extra_scale_action(
    stack: Stack,
) -> None:
    load = Level(350.0)
    first = await stack.one_policy(
        load, replicas=4, behavior={"scaleDown": {"stabilizationWindowSeconds": int(WINDOW)}})

    def history() -> list[dict[str, object]]:
        return list((status(stack.emulator, "shop", "web").get("history") or {})
                    .get("recommendations", []))

    await until(lambda: any(r["replicas"] == 4 for r in history()), timeout=30,
                what="a recommendation of 4 in the status history")

    loop = asyncio.get_running_loop()
    async with ReplicaRecorder(stack.emulator, "shop", "web") as recorder:
        load.value = 150.0  # asks for 2, but the 20s scale-down window remembers 4
        dropped = loop.time()
        await until(lambda: (status(stack.emulator, "shop", "web").get("recommendation") or {})
                    .get("raw") == 2, timeout=15, what="the decision saw the lower load")
        assert replicas(stack.emulator, "shop", "web") == 4

        await until(lambda: loop.time() >= dropped + WINDOW / 2, timeout=WINDOW,
                    what="the middle of the stabilization window")
        await first.stop()
        assert replicas(stack.emulator, "shop", "web") == 4
        await stack.operator()

        await until(lambda: replicas(stack.emulator, "shop", "web") == 2, timeout=WINDOW + 20,
                    what="the scale-down once the window passed")
    # Forgetting the window on restart would have scaled down at once, mid-window.
    assert recorder.values() == [4, 2]
    # The last recommendation of 4 may come a tick after the drop, not more.
    assert recorder.changes[1][0] >= dropped + WINDOW - 2
    assert (await until_event(stack.emulator, "shop", "web", "Scaled")).count("Scaled") == 1
