"""The Prometheus adapter against a real Prometheus server with backfilled history."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp.web
import numpy as np
import pytest

from foreseer.lab.exporter import Workload, periodic
from foreseer.lab.prometheus import PrometheusServer, openmetrics
from foreseer.operator.deciding import MetricOutage, OutageKind
from foreseer.operator.settings import PrometheusSettings
from foreseer.operator.sources import Prometheus
from foreseer.predictors.series import Series
from harness.proxies import BearerProxy

pytestmark = pytest.mark.integration
STEP = 60.0
DAY = 86400.0
T0 = math.floor(time.time() / STEP) * STEP - STEP  # "now" of every test: the newest sample
LOAD = periodic(base=100, amplitude=40, period=DAY)
WEB = 'sum(workload_load{app="web"})'


def grid(load: Callable[[float], float | None], start: float, end: float) -> Series:
    return Workload("x", "shop", load).history(start, end + STEP, STEP)


SPIKY = grid(LOAD, T0 - DAY, T0)
SPIKY.values[100], SPIKY.values[200] = math.inf, -5.0  # one +Inf and one negative scrape


@pytest.fixture(scope="module")
def backfilled(prometheus_binaries: tuple[str, str],
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """8 days of `web` load (with a missing hour), a NaN-reporting exporter, a series whose
    newest sample is 3 minutes old, and a metric split over two series."""
    web = grid(LOAD, T0 - 8 * DAY, T0)
    web.values[-600:-540] = np.nan
    server = PrometheusServer(tmp_path_factory.mktemp("prometheus"))
    server.backfill(
        openmetrics("workload_load", {"app": "web"}, web),
        openmetrics("workload_load", {"app": "nan"}, grid(lambda t: math.nan, T0 - 600, T0),
                    nan_samples=True),
        openmetrics("workload_load", {"app": "late"}, grid(LOAD, T0 - 3600, T0 - 180)),
        openmetrics("workload_load", {"app": "twin", "zone": "a"}, grid(LOAD, T0 - 600, T0)),
        openmetrics("workload_load", {"app": "twin", "zone": "b"}, grid(LOAD, T0 - 600, T0)),
        openmetrics("workload_load", {"app": "spiky"}, SPIKY),
    )
    server.start()
    yield server
    server.close()


@pytest.fixture
async def source(backfilled: PrometheusServer) -> Prometheus:
    source = Prometheus(PrometheusSettings(url=backfilled.url), stale_after=120)
    yield source
    await source.close()


async def test_the_current_value_is_the_load_at_now(source: Prometheus) -> None:
    assert await source.current(WEB, T0) == pytest.approx(LOAD(T0))


@pytest.mark.parametrize(("query", "kind", "says"), [
    ('sum(workload_load{app="missing"})', OutageKind.EMPTY, "no series"),
    ('workload_load{app="nan"}', OutageKind.NAN, "NaN"),
    ('workload_load{app="late"}', OutageKind.STALE, "limit 120s"),
    ('workload_load{app="twin"}', OutageKind.ERROR, "aggregate it"),
    ("sum(rate(workload_load[5m]", OutageKind.ERROR, "parse error"),
    (f"-1 * {WEB}", OutageKind.INVALID, "not a load"),
    ('workload_load{app="web"}[5m]', OutageKind.ERROR, "range vector"),
    ('"text"', OutageKind.ERROR, "not a number"),
])
async def test_each_kind_of_missing_metric_is_a_typed_outage_never_zero(
        source: Prometheus, query: str, kind: OutageKind, says: str) -> None:
    reading = await source.current(query, T0)
    assert isinstance(reading, MetricOutage)
    assert reading.kind is kind and says in reading.detail


async def test_history_matches_the_backfill_and_a_missing_hour_stays_missing(
        source: Prometheus) -> None:
    history = await source.history(("shop", "p", "web"), WEB, step=STEP, window=7 * DAY, now=T0)
    assert history is not None and len(history) == 7 * 1440
    assert history.times()[-1] == T0
    expected = grid(LOAD, T0 - 7 * DAY + STEP, T0).values
    outside_gap = np.ones(len(history), dtype=bool)
    outside_gap[-600:-540] = False
    assert np.allclose(history.values[outside_gap], expected[outside_gap])
    # Prometheus' 5m lookback carries the last sample over the first minutes of the gap only.
    assert np.isnan(history.values[-594:-540]).all()


async def test_history_reads_the_whole_window_once_then_only_the_new_tail(
        source: Prometheus, backfilled: PrometheusServer) -> None:
    before = len(backfilled.queries())
    await source.history(("shop", "p", "web"), WEB, step=STEP, window=8 * DAY, now=T0 - 120)
    first = backfilled.queries()[before:]
    later = await source.history(("shop", "p", "web"), WEB, step=STEP, window=8 * DAY, now=T0)
    tail = backfilled.queries()[before + len(first):]
    # 8 days at 1m is 11,520 points: more than Prometheus serves in one range query.
    assert len(first) == 2 and all(q["query"] == WEB for q in first)
    assert len(tail) == 1 and tail[0]["step"] == STEP
    assert _unix(tail[0]["start"]) == T0 - 120 and _unix(tail[0]["end"]) == T0
    assert later is not None and later.times()[-1] == T0
    assert later.values[-1] == pytest.approx(LOAD(T0))


async def test_infinite_and_negative_samples_in_history_are_counted_gaps_not_a_lost_window(
        backfilled: PrometheusServer) -> None:
    invalid: list[tuple[tuple[str, str, str], int]] = []
    source = Prometheus(PrometheusSettings(url=backfilled.url),
                        on_invalid=lambda key, count: invalid.append((key, count)))
    key = ("shop", "p", "spiky")
    try:
        history = await source.history(key, 'sum(workload_load{app="spiky"})', step=STEP,
                                       window=DAY, now=T0)
    finally:
        await source.close()
    assert history is not None
    bad = [round((SPIKY.start + i * STEP - history.start) / STEP) for i in (100, 200)]
    assert np.isnan(history.values[bad]).all()
    assert np.isfinite(history.values).sum() == len(history) - 2
    assert (history.values[np.isfinite(history.values)] >= 0).all()
    assert invalid == [(key, 2)]


async def test_a_prometheus_slower_than_the_timeout_is_reported_as_a_timeout() -> None:
    async def slow(request: aiohttp.web.Request) -> aiohttp.web.Response:
        await asyncio.sleep(3)
        return aiohttp.web.json_response({"status": "success", "data": {"result": []}})

    app = aiohttp.web.Application()
    app.router.add_route("*", "/{path:.*}", slow)
    runner = aiohttp.web.AppRunner(app, access_log=None)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    source = Prometheus(PrometheusSettings(url=f"http://{host}:{port}", timeout=0.3, retries=1))
    try:
        reading = await source.current(WEB, T0)
    finally:
        await source.close()
        await runner.cleanup()
    assert isinstance(reading, MetricOutage) and reading.kind is OutageKind.ERROR
    assert "timeout" in reading.detail and "cannot connect" not in reading.detail


async def test_an_outage_leaves_the_tail_missing_and_it_is_read_after_recovery(
        prometheus_factory: Callable[..., PrometheusServer]) -> None:
    server = prometheus_factory()
    server.backfill(openmetrics("workload_load", {"app": "web"}, grid(LOAD, T0 - DAY, T0)))
    await asyncio.to_thread(server.start)
    source = Prometheus(PrometheusSettings(url=server.url, retries=1))
    key = ("shop", "p", "web")
    try:
        await source.history(key, WEB, step=STEP, window=DAY, now=T0 - 600)
        await asyncio.to_thread(server.stop)
        reading = await source.current(WEB, T0)
        assert isinstance(reading, MetricOutage) and reading.kind is OutageKind.ERROR
        assert "cannot connect" in reading.detail
        during = await source.history(key, WEB, step=STEP, window=DAY, now=T0)
        assert during is not None and np.isnan(during.values[-10:]).all()
        await asyncio.to_thread(server.start)
        after = await source.history(key, WEB, step=STEP, window=DAY, now=T0)
        assert after is not None and not np.isnan(after.values[-10:]).any()
    finally:
        await source.close()


async def test_basic_auth_and_a_private_ca_are_used_and_required(
        prometheus_factory: Callable[..., PrometheusServer], tmp_path: Path) -> None:
    server = prometheus_factory()
    server.basic_auth, server.tls = ("foreseer", "s3cret"), True
    await asyncio.to_thread(server.start)
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    wrong = tmp_path / "wrong"
    wrong.write_text("guess")

    async def read(**auth: object) -> float | MetricOutage:
        source = Prometheus(PrometheusSettings(url=server.url, retries=0, **auth))
        try:
            return await source.current("vector(7)", time.time())
        finally:
            await source.close()

    assert await read(username="foreseer", password_file=str(password),
                      ca_file=str(server.ca_file)) == 7
    assert await read(username="foreseer", password_file=str(password), insecure=True) == 7
    untrusted = await read(username="foreseer", password_file=str(password))
    assert isinstance(untrusted, MetricOutage) and "CERTIFICATE_VERIFY_FAILED" in untrusted.detail
    refused = await read(username="foreseer", password_file=str(wrong),
                         ca_file=str(server.ca_file))
    assert isinstance(refused, MetricOutage) and "HTTP 401" in refused.detail


async def test_a_bearer_token_file_is_sent_and_reread_so_rotated_tokens_work(
        backfilled: PrometheusServer, tmp_path: Path) -> None:
    tokens = ["first-token"]
    token_file = tmp_path / "token"
    token_file.write_text("first-token\n")
    async with BearerProxy(backfilled.url, token=lambda: tokens[-1]) as proxy:
        source = Prometheus(PrometheusSettings(url=proxy.url, bearer_token_file=str(token_file),
                                               retries=0))
        try:
            assert await source.current(WEB, T0) == pytest.approx(LOAD(T0))
            tokens.append("rotated-token")
            token_file.write_text("rotated-token\n")
            assert await source.current(WEB, T0) == pytest.approx(LOAD(T0))
            tokens.append("revoked")
            refused = await source.current(WEB, T0)
        finally:
            await source.close()
    assert isinstance(refused, MetricOutage) and "HTTP 401: Unauthorized" in refused.detail
    assert proxy.rejected == 2  # the value query and its timestamp query, only after revoking


def _unix(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def test_a_tenancy_proxy_gets_the_policys_namespace_as_its_enforced_label() -> None:
    asked: list[dict[str, str]] = []

    async def proxy(request: aiohttp.web.Request) -> aiohttp.web.Response:
        asked.append(dict(request.query))
        form = await request.post()
        value = str(T0) if "timestamp(" in str(form["query"]) else "5"  # fresh
        return aiohttp.web.json_response({"status": "success", "data": {
            "resultType": "vector", "result": [{"metric": {}, "value": [T0, value]}]}})

    app = aiohttp.web.Application()
    app.router.add_route("*", "/{path:.*}", proxy)
    runner = aiohttp.web.AppRunner(app, access_log=None)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    source = Prometheus(PrometheusSettings(url=f"http://{host}:{port}",
                                           tenancy_parameter="namespace"))
    try:
        assert await source.current(WEB, T0, tenant="shop") == 5.0
    finally:
        await source.close()
        await runner.cleanup()
    assert asked and all(query.get("namespace") == "shop" for query in asked)
