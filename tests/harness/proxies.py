"""A bearer-token gate in front of Prometheus, like kube-rbac-proxy or oauth2-proxy in clusters.

Prometheus itself knows only basic auth and TLS, so bearer tokens (the common way to reach a
managed or in-cluster Prometheus) are checked here, then requests are passed through::

    async with BearerProxy(server.url, token=lambda: "s3cret") as proxy:
        PrometheusSettings(url=proxy.url, bearer_token_file=...)
"""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
import aiohttp.web


class BearerProxy:
    """Forwards every request to `upstream` when it carries ``Authorization: Bearer <token()>``,
    answers 401 otherwise. `token` is a callable so tests can rotate it."""

    def __init__(self, upstream: str, token: Callable[[], str]) -> None:
        self.upstream = upstream.rstrip("/")
        self.token = token
        self.rejected = 0
        """How many requests were refused (for assertions)."""
        app = aiohttp.web.Application()
        app.router.add_route("*", "/{path:.*}", self._forward)
        self._runner = aiohttp.web.AppRunner(app, access_log=None)
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        host, port = self._runner.addresses[0][:2]
        return f"http://{host}:{port}"

    async def __aenter__(self) -> BearerProxy:
        self._session = aiohttp.ClientSession()
        await self._runner.setup()
        await aiohttp.web.TCPSite(self._runner, "127.0.0.1", 0).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.token()}":
            self.rejected += 1
            return aiohttp.web.Response(status=401, text="Unauthorized")
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() in ("content-type", "accept")}
        async with self._session.request(
                request.method, f"{self.upstream}{request.rel_url}", headers=headers,
                data=await request.read()) as upstream:
            return aiohttp.web.Response(status=upstream.status, body=await upstream.read(),
                                        content_type=upstream.content_type)
