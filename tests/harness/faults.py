"""A fault-injecting proxy in front of a real Prometheus, for the fault matrix.

Each query is routed by the workload it names (``app="<name>"``): a workload with an
active fault gets that fault instead of (or on top of) Prometheus' answer, the others get
Prometheus' own answer. So one Prometheus and one operator serve every cell of the matrix
at once::

    async with FaultProxy(server.url) as proxy:
        proxy.faults["cell-5xx"] = Fault.SERVER_ERROR
        proxy.active = True
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from enum import StrEnum
from typing import Any

import aiohttp
import aiohttp.web

_APP = re.compile(r'app="([^"]+)"')


class Fault(StrEnum):
    """What a broken Prometheus, or what sits in front of it, may do."""

    DOWN = "down"
    """The connection is dropped without an answer."""
    SLOW = "slow"
    """The answer comes after the operator's timeout."""
    SERVER_ERROR = "5xx"
    """503 Service Unavailable."""
    GARBAGE = "garbage"
    """200 with a body that is not JSON (an HTML error page of a proxy)."""
    WRONG_SHAPE = "wrong-shape"
    """200 with valid JSON of the wrong shape (``result: [1, 2]``)."""
    EMPTY = "empty"
    """A successful answer with no series."""
    NAN = "nan"
    """A successful answer whose value is NaN."""
    STALE = "stale"
    """The newest sample is an hour old."""
    INF_IN_HISTORY = "inf-in-history"
    """Range queries carry one ``+Inf`` sample; everything else is Prometheus' answer."""


class FaultProxy:
    """Forwards to `upstream`, except for the queries of workloads with an active fault."""

    def __init__(self, upstream: str, slow_seconds: float = 5.0) -> None:
        self.upstream = upstream.rstrip("/")
        self.slow_seconds = slow_seconds
        self.faults: dict[str, Fault] = {}
        """Workload (its ``app`` label) -> its fault, while `active`."""
        self.active = False
        app = aiohttp.web.Application()
        app.router.add_route("*", "/{path:.*}", self._serve)
        self._runner = aiohttp.web.AppRunner(app, access_log=None)
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        host, port = self._runner.addresses[0][:2]
        return f"http://{host}:{port}"

    async def __aenter__(self) -> FaultProxy:
        self._session = aiohttp.ClientSession()
        await self._runner.setup()
        await aiohttp.web.TCPSite(self._runner, "127.0.0.1", 0).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def fault_of(self, query: str) -> Fault | None:
        if not self.active:
            return None
        found = _APP.search(query)
        return self.faults.get(found.group(1)) if found else None

    async def _serve(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        body = await request.read()
        form = dict(request.query)
        if body and request.content_type == "application/x-www-form-urlencoded":
            form.update(await request.post())  # type: ignore[arg-type]
        query = str(form.get("query", ""))
        fault = self.fault_of(query)
        if fault is Fault.DOWN:
            assert request.transport is not None
            request.transport.close()
            raise aiohttp.web.HTTPServiceUnavailable  # never reaches the closed connection
        if fault is Fault.SLOW:
            await asyncio.sleep(self.slow_seconds)
        if fault is Fault.SERVER_ERROR:
            return aiohttp.web.Response(status=503, text="upstream unavailable")
        if fault is Fault.GARBAGE:
            return aiohttp.web.Response(status=200, text="<html>bad gateway</html>",
                                        content_type="text/html")
        if fault is Fault.WRONG_SHAPE:
            return _answer([1, 2])
        if fault is Fault.EMPTY:
            return _answer([])
        if fault is Fault.NAN:
            return _answer([{"metric": {}, "value": [time.time(), "NaN"]}])
        if fault is Fault.STALE and "timestamp(" in query:
            return _answer([{"metric": {}, "value": [time.time(), str(time.time() - 3600)]}])
        status, content_type, payload = await self._forward(request, body)
        if fault is Fault.INF_IN_HISTORY and request.path.endswith("/query_range"):
            decoded = json.loads(payload)
            for series in decoded["data"]["result"]:
                if series["values"]:
                    series["values"][len(series["values"]) // 2][1] = "+Inf"
            payload = json.dumps(decoded).encode()
        return aiohttp.web.Response(status=status, body=payload, content_type=content_type)

    async def _forward(self, request: aiohttp.web.Request, body: bytes) -> tuple[int, str, bytes]:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() in ("content-type", "accept")}
        async with self._session.request(request.method, f"{self.upstream}{request.rel_url}",
                                         headers=headers, data=body) as upstream:
            return upstream.status, upstream.content_type, await upstream.read()


def _answer(result: Any) -> aiohttp.web.Response:
    return aiohttp.web.json_response({"status": "success",
                                      "data": {"resultType": "vector", "result": result}})
