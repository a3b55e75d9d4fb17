"""The integration tests' ReplicaRecorder misses no change, however soon the test stops it."""

from __future__ import annotations

import pytest
from operator_stack import ReplicaRecorder

from foreseer.lab.emulator import DEPLOYMENTS, Emulator, deployment

pytestmark = pytest.mark.integration


async def test_a_change_published_just_before_the_recorder_stops_is_recorded(
    emulator: Emulator,
) -> None:
    await emulator.create_object(DEPLOYMENTS, deployment("web", "shop", 4))
    async with ReplicaRecorder(emulator, "shop", "web") as recorder:
        # No await between the write and the end of the block: the watch event is queued
        # but the recorder's task has not run yet (as when a wait polls the store first).
        await emulator.patch_object(DEPLOYMENTS, "shop", "web", {"spec": {"replicas": 2}})
    assert recorder.values() == [4, 2]
