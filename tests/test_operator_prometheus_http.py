"""The Prometheus adapter's HTTP, against small local aiohttp servers that answer as
Prometheus, or a proxy in front of it, does: its typed errors, its retries, its credentials
and its session's lifecycle. (A real Prometheus: tests/integration/test_integration_sources.)"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp.web
import pytest

from foreseer.operator import sources
from foreseer.operator.deciding import MetricOutage, OutageKind
from foreseer.operator.settings import PrometheusSettings
from foreseer.operator.sources import ERROR_LIMIT, Prometheus

NOW = 1_700_000_000.0
Handler = Callable[[aiohttp.web.Request], Awaitable[aiohttp.web.StreamResponse]]


@contextlib.asynccontextmanager
async def serving(handler: Handler, sock: socket.socket | None = None) -> AsyncIterator[str]:
    """A local HTTP server answering every path with `handler` (on `sock` if given); yields
    its URL."""
    app = aiohttp.web.Application()
    app.router.add_route("*", "/{path:.*}", handler)
    runner = aiohttp.web.AppRunner(app, access_log=None)
    await runner.setup()
    if sock is None:
        sock = socket.create_server(("127.0.0.1", 0))
    await aiohttp.web.SockSite(runner, sock).start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def answer(value: str = "5") -> aiohttp.web.Response:
    """A fresh one-series vector, for the value query and its timestamp query alike."""
    return aiohttp.web.json_response({"status": "success", "data": {
        "resultType": "vector", "result": [{"metric": {}, "value": [NOW, value]}]}})


async def fresh(request: aiohttp.web.Request) -> aiohttp.web.Response:
    form = await request.post()
    return answer(str(NOW) if "timestamp(" in str(form["query"]) else "5")


def authorizing(seen: list[str]) -> Handler:
    """`fresh`, noting each request's Authorization header in ``seen``."""
    async def record(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        seen.append(request.headers.get("Authorization", ""))
        return await fresh(request)
    return record


async def read(url: str, query: str = "sum(up)", **settings: object) -> float | MetricOutage:
    source = Prometheus(PrometheusSettings(url=url, **settings))  # type: ignore[arg-type]
    try:
        return await source.current(query, NOW)
    finally:
        await source.close()


async def test_prometheus_json_error_becomes_an_outage_naming_its_error_type_and_message() -> None:
    async def refuse(request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.json_response(
            {"status": "error", "errorType": "bad_data",
             "error": 'invalid parameter "query": 1:9: parse error: unclosed left parenthesis'},
            status=400)

    async with serving(refuse) as url:
        reading = await read(url, "sum(up")
    assert isinstance(reading, MetricOutage) and reading.kind is OutageKind.ERROR
    assert reading.detail == ('HTTP 400 bad_data: invalid parameter "query": 1:9: parse error: '
                              "unclosed left parenthesis")


async def test_an_execution_error_in_a_successful_status_is_still_an_error() -> None:
    async def failed(request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.json_response({"status": "error", "errorType": "execution",
                                          "error": "many-to-many matching not allowed"})

    async with serving(failed) as url:
        reading = await read(url)
    assert isinstance(reading, MetricOutage)
    assert reading.detail == "HTTP 200 execution: many-to-many matching not allowed"


async def test_an_error_body_that_is_not_prometheus_json_is_shown_bounded_without_label_sets(
        ) -> None:
    async def page(request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(status=502, text='bad gateway {tenant="other"} ' + "x" * 5000)

    async with serving(page) as url:
        reading = await read(url, retries=0)
    assert isinstance(reading, MetricOutage)
    assert reading.detail.startswith("HTTP 502: bad gateway {…} xxx")
    assert "other" not in reading.detail and len(reading.detail) <= len("HTTP 502: ") + ERROR_LIMIT


async def test_retries_of_a_failing_prometheus_stop_after_the_configured_number() -> None:
    asked = 0

    async def unavailable(request: aiohttp.web.Request) -> aiohttp.web.Response:
        nonlocal asked
        asked += 1
        return aiohttp.web.Response(status=503, text="upstream unavailable")

    async with serving(unavailable) as url:
        reading = await read(url, retries=2)
    assert isinstance(reading, MetricOutage) and reading.detail == "HTTP 503: upstream unavailable"
    assert asked == 2 * 3  # the value query and its timestamp query, each tried 1 + 2 times


async def test_a_query_prometheus_refuses_is_not_retried() -> None:
    asked = 0

    async def refuse(request: aiohttp.web.Request) -> aiohttp.web.Response:
        nonlocal asked
        asked += 1
        return aiohttp.web.json_response({"status": "error", "errorType": "bad_data",
                                          "error": "parse error"}, status=400)

    async with serving(refuse) as url:
        await read(url, retries=2)
    assert asked == 2


async def test_a_failure_that_passes_is_retried_into_a_value() -> None:
    failures = {"query": 1}

    async def flaky(request: aiohttp.web.Request) -> aiohttp.web.Response:
        form = await request.post()
        if "timestamp(" not in str(form["query"]) and failures["query"]:
            failures["query"] -= 1
            return aiohttp.web.Response(status=429, headers={"Retry-After": "0"})
        return await fresh(request)

    async with serving(flaky) as url:
        assert await read(url, retries=1) == 5.0
    assert failures["query"] == 0


async def test_a_rotated_bearer_token_file_is_sent_on_the_next_query(tmp_path: Path) -> None:
    seen: list[str] = []

    token = tmp_path / "token"
    token.write_text("first\n")
    async with serving(authorizing(seen)) as url:
        source = Prometheus(PrometheusSettings(url=url, bearer_token_file=str(token)))
        try:
            assert await source.current("sum(up)", NOW) == 5.0
            token.write_text("rotated\n")
            assert await source.current("sum(up)", NOW) == 5.0
        finally:
            await source.close()
    assert seen == ["Bearer first"] * 2 + ["Bearer rotated"] * 2


async def test_basic_auth_sends_the_password_file_as_it_is_now(tmp_path: Path) -> None:
    seen: list[str] = []

    password = tmp_path / "password"
    password.write_text("s3cret\n")
    async with serving(authorizing(seen)) as url:
        assert await read(url, username="foreseer", password_file=str(password)) == 5.0
    assert set(seen) == {"Basic Zm9yZXNlZXI6czNjcmV0"}  # foreseer:s3cret


async def test_a_missing_token_file_is_an_outage_that_names_the_file(tmp_path: Path) -> None:
    async with serving(fresh) as url:
        reading = await read(url, bearer_token_file=str(tmp_path / "gone"))
    assert isinstance(reading, MetricOutage) and reading.kind is OutageKind.ERROR
    assert "cannot read the credentials" in reading.detail and "gone" in reading.detail


async def test_a_missing_ca_file_is_an_outage_that_names_the_file(tmp_path: Path) -> None:
    async with serving(fresh) as url:
        reading = await read(url.replace("http:", "https:"), ca_file=str(tmp_path / "ca.pem"))
    assert isinstance(reading, MetricOutage) and reading.kind is OutageKind.ERROR
    assert "cannot load the TLS CA file" in reading.detail and "ca.pem" in reading.detail


async def test_the_proxy_of_the_environment_is_used_with_its_credentials(
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str]] = []

    async def proxy(request: aiohttp.web.Request) -> aiohttp.web.Response:
        seen.append((request.headers["Host"], request.headers.get("Proxy-Authorization", "")))
        return await fresh(request)

    async with serving(proxy) as url:
        for name in ("NO_PROXY", "no_proxy", "http_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", url.replace("http://", "http://me:pw@"))
        assert await read("http://prometheus.invalid:9090") == 5.0
        monkeypatch.setenv("NO_PROXY", "prometheus.invalid")
        bypassed = await read("http://prometheus.invalid:9090", retries=0)
    assert seen == [("prometheus.invalid:9090", "Basic bWU6cHc=")] * 2  # me:pw
    assert isinstance(bypassed, MetricOutage) and "cannot connect" in bypassed.detail


async def test_closing_a_source_that_never_queried_is_fine() -> None:
    source = Prometheus(PrometheusSettings())
    await source.close()
    await source.close()


def test_a_source_made_outside_any_event_loop_queries_inside_one() -> None:
    sock = socket.create_server(("127.0.0.1", 0))
    source = Prometheus(PrometheusSettings(url=f"http://127.0.0.1:{sock.getsockname()[1]}"))

    async def scenario() -> float | MetricOutage:
        async with serving(fresh, sock):
            try:
                return await source.current("sum(up)", NOW)
            finally:
                await source.close()

    assert asyncio.run(scenario()) == 5.0


async def test_a_token_that_cannot_be_a_header_is_an_outage_and_a_history_read_survives_it(
        tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first-line\nsecond-line")
    async with serving(fresh) as url:
        source = Prometheus(PrometheusSettings(url=url, bearer_token_file=str(token)))
        try:
            reading = await source.current("sum(up)", NOW)
            history = await source.history(("shop", "web", "rps"), "sum(up)", step=60.0,
                                           window=3600.0, now=NOW)
        finally:
            await source.close()
    assert isinstance(reading, MetricOutage) and reading.kind is OutageKind.ERROR
    assert "cannot send the query" in reading.detail
    assert history is None  # nothing known yet; the next tick reads again


async def test_a_token_file_that_is_not_text_is_an_outage(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_bytes(b"\xff\xfe\x00")
    async with serving(fresh) as url:
        reading = await read(url, bearer_token_file=str(token))
    assert isinstance(reading, MetricOutage) and "cannot read the credentials" in reading.detail


async def test_an_answer_broken_off_mid_body_is_retried() -> None:
    broken = {"left": 2}

    async def flaky(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        if broken["left"]:
            broken["left"] -= 1
            response = aiohttp.web.StreamResponse(headers={"Content-Length": "1000"})
            await response.prepare(request)
            await response.write(b'{"status": "succ')
            assert request.transport is not None
            request.transport.close()
            return response
        return await fresh(request)

    async with serving(flaky) as url:
        assert await read(url, retries=2) == 5.0
    assert broken["left"] == 0


async def test_an_answer_past_the_size_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "MAX_ANSWER_BYTES", 2000)

    async def huge(request: aiohttp.web.Request) -> aiohttp.web.Response:
        result = [{"metric": {"pod": f"web-{i}"}, "value": [NOW, "1"]} for i in range(200)]
        return aiohttp.web.json_response({"status": "success", "data": {
            "resultType": "vector", "result": result}})

    async def streamed(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        response = aiohttp.web.StreamResponse()  # chunked: no Content-Length to go by
        await response.prepare(request)
        for _ in range(100):
            await response.write(b" " * 100)
        await response.write_eof()
        return response

    for handler in (huge, streamed):
        async with serving(handler) as url:
            reading = await read(url, retries=0)
        assert isinstance(reading, MetricOutage) and reading.kind is OutageKind.ERROR
        assert "larger than" in reading.detail and "aggregate the query" in reading.detail


async def test_a_closed_source_answers_with_an_outage_and_opens_no_session() -> None:
    async with serving(fresh) as url:
        source = Prometheus(PrometheusSettings(url=url))
        assert await source.current("sum(up)", NOW) == 5.0
        await source.close()
        reading = await source.current("sum(up)", NOW)
    assert isinstance(reading, MetricOutage) and "closed" in reading.detail
    assert source._session is None


async def test_queries_past_the_connection_limit_wait_before_their_timeout_starts() -> None:
    async def slow(request: aiohttp.web.Request) -> aiohttp.web.Response:
        await asyncio.sleep(0.5)
        return await fresh(request)

    async with serving(slow) as url:
        source = Prometheus(PrometheusSettings(url=url, timeout=1.0, retries=0))
        try:
            # 80 queries, 20 at a time: the last wait 1.5 s for a slot, each answers in 0.5 s.
            readings = await asyncio.gather(*(source.current("sum(up)", NOW)
                                              for _ in range(40)))
        finally:
            await source.close()
    assert readings == [5.0] * 40


async def test_no_proxy_exempts_an_address_in_a_cidr_block_and_a_host_with_its_port(
        monkeypatch: pytest.MonkeyPatch) -> None:
    proxied: list[str] = []

    async def proxy(request: aiohttp.web.Request) -> aiohttp.web.Response:
        proxied.append(request.headers["Host"])
        return aiohttp.web.Response(status=502, text="the proxy was used")

    async with serving(proxy) as proxy_url, serving(fresh) as url:
        for name in ("NO_PROXY", "no_proxy", "http_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        port = url.rpartition(":")[2]
        for exempt in ("10.0.0.0/8,127.0.0.0/8", f"localhost:{port}"):
            monkeypatch.setenv("NO_PROXY", exempt)
            host = "127.0.0.1" if "/" in exempt else "localhost"
            assert await read(f"http://{host}:{port}", retries=0) == 5.0
    assert proxied == []
