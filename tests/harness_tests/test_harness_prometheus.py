"""The harness's real Prometheus: backfilled history, outages, and the live exporter."""

from __future__ import annotations

import asyncio
import math
import socket
import time
import urllib.error
from collections.abc import Callable

import numpy as np
import pytest

from foreseer.lab.emulator import DEPLOYMENTS, Emulator, deployment
from foreseer.lab.exporter import Exporter, Workload, periodic
from foreseer.lab.prometheus import PrometheusServer, openmetrics
from foreseer.lab.waiting import until
from foreseer.lab.workloads import DeploymentController, ready_replicas
from foreseer.predictors.series import Series

pytestmark = pytest.mark.integration
Factory = Callable[..., PrometheusServer]
STEP = 60.0
DAY = 86400.0


def two_days_until_now(load: Callable[[float], float | None]) -> Series:
    end = (time.time() // STEP) * STEP
    return Workload("web", "shop", load).history(end - 2 * 86400, end, STEP)


def test_backfilled_history_is_queryable_over_a_range(prometheus_factory: Factory) -> None:
    load = periodic(base=100, amplitude=40, period=86400)
    history = two_days_until_now(load)
    history.values[605:655] = np.nan  # 50 minutes the exporter was down
    server = prometheus_factory()
    server.backfill(openmetrics("workload_load", {"app": "web"}, history))
    server.start()
    [result] = server.query_range("workload_load", history.start, history.end - STEP, 3600)
    times = [float(t) for t, _ in result["values"]]
    values = [float(v) for _, v in result["values"]]
    assert times[0] == history.start and len(times) == 48
    assert np.allclose(values, [load(t) for t in times])
    gap = server.query_range("workload_load", history.start + 611 * STEP,
                             history.start + 650 * STEP, STEP)
    assert gap == []  # the missing stretch stays missing (beyond the 5m lookback)


def test_a_stopped_prometheus_refuses_queries_and_keeps_its_history_on_restart(
        prometheus_factory: Factory) -> None:
    history = two_days_until_now(periodic(base=10, amplitude=1))
    server = prometheus_factory()
    server.backfill(openmetrics("workload_load", {"app": "web"}, history))
    server.start()
    url = server.url
    server.stop()
    with pytest.raises(urllib.error.URLError):
        server.query("workload_load")
    server.start()
    assert server.url == url
    [result] = server.query_range("workload_load", history.start, history.end - STEP, 3600)
    assert len(result["values"]) == 48


async def test_the_exporter_load_per_replica_follows_the_deployments_ready_replicas(
        emulator: Emulator, deployments: DeploymentController, exporter: Exporter,
        prometheus_factory: Factory) -> None:
    await emulator.create_object(DEPLOYMENTS, deployment("web", "shop", 1))
    exporter.workloads.append(Workload("web", "shop", load=lambda t: 120.0,
                                       ready_replicas=ready_replicas(emulator, "shop", "web")))
    server = prometheus_factory(targets=[exporter.target])
    await asyncio.to_thread(server.start)

    async def per_replica() -> float | None:
        result = await asyncio.to_thread(server.query, 'workload_load_per_replica{app="web"}')
        return float(result[0]["value"][1]) if result else None

    assert await until(lambda: _equals(per_replica(), 120.0), 30, "load per replica 120")
    await emulator.patch_object(DEPLOYMENTS, "shop", "web", {"spec": {"replicas": 4}}, "scale")
    assert await until(lambda: _equals(per_replica(), 30.0), 30, "load per replica 30")


async def test_a_backfill_with_the_exporters_labels_continues_the_live_series(
        exporter: Exporter, prometheus_factory: Factory) -> None:
    load = periodic(base=50, amplitude=10, period=DAY)
    web = Workload("web", "shop", load)
    exporter.workloads.append(web)
    server = prometheus_factory(targets=[exporter.target])
    server.backfill(openmetrics("workload_load", exporter.series_labels(web),
                                two_days_until_now(load)))
    await asyncio.to_thread(server.start)
    await asyncio.to_thread(server.wait_for, 'workload_load{app="web"}')
    [series] = await asyncio.to_thread(server.query_range, 'workload_load{app="web"}',
                                       time.time() - DAY, time.time(), 3600)
    assert len(series["values"]) == 25  # one series, from the backfill into the live scrape


async def test_a_load_of_none_is_an_empty_result_and_nan_is_a_nan_sample(
        exporter: Exporter, prometheus_factory: Factory) -> None:
    exporter.workloads += [Workload("gone", "shop", load=lambda t: None),
                           Workload("broken", "shop", load=lambda t: math.nan)]
    server = prometheus_factory(targets=[exporter.target])
    await asyncio.to_thread(server.start)
    [broken] = await asyncio.to_thread(server.wait_for, 'workload_load{app="broken"}')
    assert math.isnan(float(broken["value"][1]))
    assert await asyncio.to_thread(server.query, 'workload_load{app="gone"}') == []
    assert await asyncio.to_thread(server.query, 'workload_ready_replicas{app="gone"}')


async def _equals(value: object, expected: float) -> bool:
    return await value == expected  # type: ignore[misc]


def test_a_port_taken_before_the_first_start_is_replaced_by_a_free_one(
        prometheus_factory: Factory) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        server = prometheus_factory()
        server.port = blocker.getsockname()[1]
        server.start()
        assert server.port != blocker.getsockname()[1]
        assert server.query("vector(1)")[0]["value"][1] == "1"
