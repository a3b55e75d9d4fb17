"""A live synthetic exporter: total load follows a function of time, per-replica load follows the
Deployment's ready replicas (read through a callback, from the emulator or a real cluster).

It serves ``/metrics`` on a loopback port for the harness's Prometheus to scrape::

    web = Workload("web", "ns", load=periodic(base=100, amplitude=60, period=86400),
                   ready_replicas=ready_replicas(emulator, "ns", "web"))
    async with Exporter([web]) as exporter:
        server = PrometheusServer(tmp_path, targets=[exporter.target])

Series, all labelled ``{app, namespace}``:

- ``workload_load``: the total load; absent when the load function returns None (an empty
  query result) and NaN when it returns NaN, so tests can break one metric on purpose;
- ``workload_ready_replicas``: what the callback reports;
- ``workload_load_per_replica``: load / ready replicas (absent with no ready replica).

`Workload.history` renders the same load function on a grid, for `foreseer.lab.prometheus`'s
backfill, so the backfilled past and the live present are one curve.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field

import aiohttp.web
import numpy as np
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from foreseer.lab.prometheus import SCRAPE_JOB
from foreseer.predictors.series import Series

LoadFunction = Callable[[float], float | None]
ReplicaCallback = Callable[[], int | Awaitable[int]]


def periodic(base: float, amplitude: float, period: float = 86400.0,
             peak_at: float = 0.0) -> LoadFunction:
    """A cosine load, highest (base + amplitude) at unix times ``peak_at + k * period``."""
    return lambda t: base + amplitude * math.cos(2 * math.pi * (t - peak_at) / period)


@dataclass
class Workload:
    """One simulated application: a Deployment's load and how many of its replicas are ready."""

    name: str
    """The ``app`` label (the Deployment's name, by convention)."""
    namespace: str
    """The ``namespace`` label."""
    load: LoadFunction
    """Total load at a unix time; None means not exported, NaN is exported as NaN."""
    ready_replicas: ReplicaCallback = lambda: 1
    """Ready replicas right now; sync or async (e.g. read from the emulator or a cluster)."""

    def history(self, start: float, end: float, step: float) -> Series:
        """The load on a grid ``start + i * step < end``; None becomes NaN (missing)."""
        times = start + step * np.arange(max(0, math.ceil((end - start) / step)))
        values = [self.load(float(t)) for t in times]
        return Series(start, step, np.array([np.nan if v is None else v for v in values],
                                            dtype=np.float64))


@dataclass
class _Snapshot:
    """The metric families of one scrape, in the shape prometheus-client renders."""

    families: list[Metric] = field(default_factory=list)

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


class Exporter:
    """An aiohttp server on a free loopback port exposing `Workload` metrics on /metrics."""

    def __init__(self, workloads: Sequence[Workload] = (), clock: Callable[[], float] = time.time,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.workloads = list(workloads)
        self.clock = clock
        """Time source for the load functions; the demo passes a compressed clock."""
        self.scrapes = 0
        """How many times /metrics was served (tests wait on it)."""
        self._host, self._port = host, port
        app = aiohttp.web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._runner = aiohttp.web.AppRunner(app, access_log=None)

    @property
    def target(self) -> str:
        """host:port for a Prometheus scrape config."""
        host, port = self._runner.addresses[0][:2]
        return f"{host}:{port}"

    async def __aenter__(self) -> Exporter:
        await self._runner.setup()
        await aiohttp.web.TCPSite(self._runner, self._host, self._port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()

    def series_labels(self, workload: Workload) -> dict[str, str]:
        """The labels Prometheus gives this workload's live series (with its scrape job and
        instance), so a backfill with them continues the very same series."""
        return {"app": workload.name, "namespace": workload.namespace, "job": SCRAPE_JOB,
                "instance": self.target}

    async def snapshot(self) -> _Snapshot:
        """The current values of every series."""
        now = self.clock()
        labels = ["app", "namespace"]
        load = GaugeMetricFamily("workload_load", "Total load of the workload.", labels=labels)
        ready = GaugeMetricFamily("workload_ready_replicas", "Ready replicas.", labels=labels)
        per_replica = GaugeMetricFamily("workload_load_per_replica",
                                        "Load per ready replica.", labels=labels)
        for workload in self.workloads:
            values = [workload.name, workload.namespace]
            replicas = workload.ready_replicas()
            count = int(await replicas if inspect.isawaitable(replicas) else replicas)
            ready.add_metric(values, count)
            total = workload.load(now)
            if total is None:
                continue
            load.add_metric(values, total)
            if count > 0:
                per_replica.add_metric(values, total / count)
        return _Snapshot([load, ready, per_replica])

    async def _metrics(self, request: aiohttp.web.Request) -> aiohttp.web.Response:
        body = generate_latest(await self.snapshot())
        self.scrapes += 1
        return aiohttp.web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
