"""The metrics side of the e2e suite, all on this machine: the shared harness's synthetic
exporter (its per-replica load follows each Deployment's replicas as read from the cluster),
a real Prometheus with backfilled history scraping it, and, for an operator running inside the
cluster, a TCP relay that lets its pods reach that Prometheus.

The tests themselves are synchronous, so the exporter and the relay live in an event loop on a
background thread."""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from foreseer.lab.exporter import Exporter, Workload
from foreseer.lab.prometheus import PrometheusServer, openmetrics

T = TypeVar("T")
STEP = 10.0
"""Resolution of the backfilled history (and of the policies' forecast.step)."""
HISTORY = 4 * 3600.0
"""Backfilled history: an hour more than the policies' forecast.history (3h, 18 periods of
the wave), so their range queries never start before the data does."""


class BackgroundLoop:
    """An asyncio loop on a daemon thread, for the async servers of a synchronous suite."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="e2e-loop",
                                        daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


class Relay:
    """Forwards TCP connections from ``host:port`` to ``target``: pods reach this machine's
    loopback-only Prometheus through it. A stopped Prometheus refuses the relay's upstream
    connection, so the pods see the outage exactly as a local client does."""

    def __init__(self, host: str, target_port: int) -> None:
        self.host, self.target_port = host, target_port
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> Relay:
        self._server = await asyncio.start_server(self._pipe_connection, self.host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _pipe_connection(self, reader: asyncio.StreamReader,
                               writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


class Level:
    """A load the test sets by hand: ``level.value = 200`` changes what the exporter reports."""

    def __init__(self, value: float) -> None:
        self.value = value

    def __call__(self, _: float) -> float:
        return self.value


@dataclass(frozen=True)
class Wave:
    """A periodic load: `low`, and `high` for the first `width` seconds of every `period`.

    Like a daily batch or a lunchtime rush, compressed so that a test sees a peak within
    minutes; a peak starts at every unix time that is a multiple of `period`."""

    low: float = 40.0
    high: float = 200.0
    period: float = 600.0
    width: float = 120.0

    def __call__(self, t: float) -> float:
        return self.high if t % self.period < self.width else self.low

    def next_peak(self, after: float) -> float:
        """Start time of the first peak at or after `after`."""
        return math.ceil(after / self.period) * self.period


class ReplicaSource(Protocol):
    """Where replicas come from: `clusters.Cluster` (kubectl against the API server)."""

    def all_replicas(self, namespace: str) -> dict[str, int]: ...


@dataclass
class ReplicaReader:
    """The exporter's replica callbacks: each Deployment's spec.replicas as read from the
    cluster (one request for the whole namespace per scrape, off the event loop).

    Desired replicas, not ready ones, so that the load follows scaling even on clusters where
    the pause pods cannot run."""

    cluster: ReplicaSource
    namespace: str
    max_age: float = 0.5
    """Seconds a read serves every workload of one scrape."""
    _read_at: float = -math.inf
    _replicas: dict[str, int] = field(default_factory=dict)

    def of(self, name: str) -> Callable[[], Awaitable[int]]:
        async def read() -> int:
            if time.monotonic() - self._read_at > self.max_age:
                self._replicas = await asyncio.to_thread(self.cluster.all_replicas,
                                                         self.namespace)
                self._read_at = time.monotonic()
            return self._replicas[name]
        return read


@dataclass
class Metering:
    """Exporter + Prometheus (+ relay), started together and stopped together."""

    workdir: Path
    loop: BackgroundLoop
    relay_host: str | None = None
    """Where pods reach this machine; None when the operator runs here."""
    exporter: Exporter = field(default_factory=Exporter)
    prometheus: PrometheusServer | None = None
    relay: Relay | None = None

    def start(self, workloads: list[Workload], now: float) -> None:
        """Serve `workloads`, backfill their history up to `now`, start Prometheus on it."""
        self.exporter.workloads.extend(workloads)
        self.loop.run(self.exporter.__aenter__())
        self.prometheus = PrometheusServer(self.workdir / "prometheus",
                                           targets=[self.exporter.target])
        # The scrape's own job and instance labels too: backfilled past and live present are
        # then one series, as the policies' queries expect (not two that overlap).
        if workloads:  # (a stack without workloads, e.g. for the examples, has no past)
            self.prometheus.backfill(*(
                openmetrics("workload_load", {"app": w.name, "namespace": w.namespace,
                                              "job": "exporter",
                                              "instance": self.exporter.target},
                            w.history(now - HISTORY, now - STEP, STEP))
                for w in workloads))
        self.prometheus.start()
        for w in workloads:  # a live series (never backfilled): the exporter is scraped
            self.prometheus.wait_for(
                f'workload_ready_replicas{{app="{w.name}",namespace="{w.namespace}"}}', 60)
        if self.relay_host is not None:
            self.relay = self.loop.run(Relay(self.relay_host, self.prometheus.port).start())

    @property
    def url_for_operator(self) -> str:
        """The Prometheus URL as the operator sees it (through the relay when in-cluster)."""
        assert self.prometheus is not None
        if self.relay is None:
            return self.prometheus.url
        return f"http://{self.relay.host}:{self.relay.port}"

    def close(self) -> None:
        if self.relay is not None:
            self.loop.run(self.relay.stop())
        if self.prometheus is not None:
            self.prometheus.close()
        self.loop.run(self.exporter.__aexit__(None, None, None))
