"""Real Kopf runs against the emulator: discovery, watches, status patches, Events, peering."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import kopf
import pytest

from foreseer.lab.emulator import EVENTS, Emulator
from foreseer.lab.waiting import until
from foreseer.operator.specs import GROUP, PLURAL, VERSION

POLICIES = f"{GROUP}/{VERSION}/{PLURAL}"
PEERINGS = "kopf.dev/v1/kopfpeerings"
CHART_CRDS = Path(__file__).resolve().parents[2] / "charts" / "foreseer" / "crds"


@pytest.fixture
def registry() -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    def created(patch: kopf.Patch, **_: Any) -> None:
        # Fields of the CRD's status schema: a real server (and the strict emulator) prunes
        # any other.
        patch.status["observedGeneration"] = 1

    @kopf.timer(GROUP, VERSION, PLURAL, interval=0.2, registry=registry)
    def ticking(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        patch.status["currentReplicas"] = (body.status.get("currentReplicas") or 0) + 1
        kopf.info(body, reason="Ticked", message="a tick")

    return registry


async def test_kopf_handles_policies_with_peering_and_finalizers_against_the_emulator(
        emulator: Emulator, registry: kopf.OperatorRegistry, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    emulator.install_crd_file(CHART_CRDS / "kopf-peerings.yaml")
    await emulator.create_object(PEERINGS, {"metadata": {"name": "harness", "namespace": "shop"}})
    await emulator.create_object(POLICIES, {"metadata": {"name": "p", "namespace": "shop"},
                                            "spec": {}})
    url = str(emulator.url).rstrip("/")

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=url, token="emulator-token")

    stop = asyncio.Event()
    settings = kopf.OperatorSettings()
    settings.peering.name, settings.peering.mandatory = "harness", True
    operator = asyncio.create_task(kopf.operator(
        registry=registry, settings=settings, namespaces=["shop"], stop_flag=stop))
    try:
        def status() -> dict[str, Any]:
            return (emulator.read_object(POLICIES, "shop", "p") or {}).get("status", {})

        await until(lambda: status().get("currentReplicas", 0) >= 3, 30, "three timer ticks")
        assert status()["observedGeneration"] == 1
        await until(lambda: emulator.read_object(PEERINGS, "shop", "harness").get("status"),
                    30, "kopf to announce itself in the peering object")
        assert any(e["reason"] == "Ticked" for e in emulator.list_objects(EVENTS, "shop"))
        finalizers = emulator.read_object(POLICIES, "shop", "p")["metadata"]["finalizers"]
        assert finalizers
        await emulator.delete_object(POLICIES, "shop", "p")
        await until(lambda: emulator.read_object(POLICIES, "shop", "p") is None, 30,
                    "kopf to release the finalizer")
    finally:
        stop.set()
        async with asyncio.timeout(30):
            await operator
    assert "Traceback" not in caplog.text
