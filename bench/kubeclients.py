"""`python -m foreseer.bench kubeclients`: the operator's Kubernetes client against the async ones.

The operator's `Cluster` adapter speaks REST through the `kubernetes` client's ApiClient in a
thread pool. This benchmark measures it, as shipped, against the two async clients it could
use instead, kubernetes_asyncio and lightkube, on the call a tick makes most: GET of a
Deployment's /scale. The emulator (`foreseer.lab`) serves them over loopback HTTP from a
process of its own, so the CPU measured here is the client's:

- ``p50_ms``/``p99_ms``: latency of one call, one at a time;
- ``cpu_ms_per_call``: CPU of this process per call, one at a time and ``concurrency`` at a
  time (the client's own cost: serialising, TLS-less HTTP, parsing, thread hand-offs);
- ``calls_per_second``: wall-clock throughput at ``concurrency`` (bounded by the emulator);
- ``threads_created``: threads the client started (beyond those of the bare interpreter);
- ``import_rss_mb``: resident memory the interpreter gains by importing the client.

Each client runs in a fresh child process of its own, ``--rounds`` times; the table shows
the median of the rounds.

It needs the lab and the two async clients: the ``[kubeclients]`` extra, which
``make bench-kubeclients`` installs in a venv of its own (Kopf imports kubernetes_asyncio
whenever it is installed, so the development venv leaves it out). ``--clients`` measures
some of them only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from foreseer.bench.processes import rss_mb, threads

NAMESPACE, NAME = "shop", "web"
SCALE_PATH = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{NAME}/scale"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calls", type=int, default=300, help="sequential calls per client")
    parser.add_argument("--concurrent-calls", type=int, default=1000,
                        help="calls per client at --concurrency")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="child processes per client")
    parser.add_argument("--clients", nargs="+", choices=list(CLIENTS), default=list(CLIENTS),
                        help="the clients to measure (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    parser.add_argument("--serve", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--client", choices=list(CLIENTS), default=None,
                        help=argparse.SUPPRESS)
    parser.add_argument("--kubeconfig", type=Path, default=None, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    if args.serve is not None:
        asyncio.run(serve(args.serve))
        return 0
    if args.client is not None:
        print(json.dumps(asyncio.run(child(args))))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = Path(tmp) / "kubeconfig"
        server = subprocess.Popen(
            [sys.executable, "-m", "foreseer.bench", "kubeclients", "--serve", str(kubeconfig)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            if server.stdout.readline().strip() != "ready":
                raise SystemExit("the emulator did not start")
            results = {name: median_of([measured(name, kubeconfig, args)
                                        for _ in range(args.rounds)])
                       for name in args.clients}
        finally:
            server.terminate()
            server.wait(timeout=10)
    print(markdown(results, args))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(markdown(results, args) + "\n")
    return 0


async def serve(kubeconfig: Path) -> None:
    """The emulator with one Deployment, its kubeconfig at ``kubeconfig``, until stdin ends."""
    from foreseer.lab.emulator import DEPLOYMENTS, deployment, serving

    async with serving() as emulator:
        await emulator.create_object(DEPLOYMENTS, deployment(NAME, NAMESPACE, replicas=3))
        emulator.write_kubeconfig(kubeconfig, NAMESPACE)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


Call = Callable[[], Awaitable[int]]
"""One GET of the Deployment's /scale; returns the replicas, so every client parses it."""


def measured(name: str, kubeconfig: Path, args: argparse.Namespace) -> dict[str, float]:
    """One round of client ``name`` in a fresh child process."""
    command = [sys.executable, "-m", "foreseer.bench", "kubeclients", "--client", name,
               "--kubeconfig", str(kubeconfig), "--calls", str(args.calls),
               "--concurrent-calls", str(args.concurrent_calls),
               "--concurrency", str(args.concurrency)]
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def median_of(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}


async def child(args: argparse.Namespace) -> dict[str, float]:
    """Import client ``args.client``, check it reads the scale, and measure it."""
    os.environ["KUBECONFIG"] = str(args.kubeconfig)
    rss, before = rss_mb(os.getpid(), children=False), threads(os.getpid())
    client = CLIENTS[args.client](args.kubeconfig)
    imported = rss_mb(os.getpid(), children=False) - rss
    async with client as call:
        assert await call() == 3
        result = await measure(call, args)
        result["threads_created"] = threads(os.getpid()) - before
    result["import_rss_mb"] = imported
    return result


class shipped:
    """The operator's own adapter, as `Runtime.create` builds it."""

    def __init__(self, kubeconfig: Path) -> None:
        from foreseer.operator.clusters import Cluster
        from foreseer.operator.specs import ScaleTargetRef

        self.cluster = Cluster()
        self.ref = ScaleTargetRef(api_version="apps/v1", kind="Deployment", name=NAME)

    async def __aenter__(self) -> Call:
        async def call() -> int:
            return (await self.cluster.read_scale(NAMESPACE, self.ref)).replicas
        return call

    async def __aexit__(self, *exc: object) -> None:
        await self.cluster.close()


class kubernetes_asyncio_client:
    """kubernetes_asyncio's ApiClient, raw (no model deserialisation), as the adapter uses
    the sync one."""

    def __init__(self, kubeconfig: Path) -> None:
        from kubernetes_asyncio import client, config

        self.kubeconfig, self.modules = kubeconfig, (client, config)

    async def __aenter__(self) -> Call:
        client, config = self.modules
        configuration = client.Configuration()
        await config.load_kube_config(str(self.kubeconfig), client_configuration=configuration)
        self.api = client.ApiClient(configuration)

        async def call() -> int:
            response = await self.api.call_api(
                SCALE_PATH, "GET", header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"], _preload_content=False, _request_timeout=10)
            return int(json.loads(await response.read())["spec"]["replicas"])
        return call

    async def __aexit__(self, *exc: object) -> None:
        await self.api.close()


class lightkube_client:
    """lightkube's AsyncClient with its typed Scale model."""

    def __init__(self, kubeconfig: Path) -> None:
        import lightkube.resources.apps_v1  # noqa: F401

        self.kubeconfig = kubeconfig

    async def __aenter__(self) -> Call:
        from lightkube import AsyncClient, KubeConfig
        from lightkube.resources.apps_v1 import Deployment

        self.client = AsyncClient(KubeConfig.from_file(self.kubeconfig))

        async def call() -> int:
            scale = await self.client.get(Deployment.Scale, NAME, namespace=NAMESPACE)
            assert scale.spec is not None and scale.spec.replicas is not None
            return int(scale.spec.replicas)
        return call

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()


async def measure(call: Call, args: argparse.Namespace) -> dict[str, float]:
    latencies = []
    cpu = time.process_time()
    for _ in range(args.calls):
        started = time.perf_counter()
        await call()
        latencies.append(time.perf_counter() - started)
    sequential_cpu = (time.process_time() - cpu) / args.calls
    gate = asyncio.Semaphore(args.concurrency)

    async def gated() -> int:
        async with gate:
            return await call()

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(gated() for _ in range(args.concurrent_calls)))
    wall = time.perf_counter() - wall
    concurrent_cpu = (time.process_time() - cpu) / args.concurrent_calls
    cuts = statistics.quantiles(latencies, n=100)
    return {"p50_ms": 1e3 * statistics.median(latencies), "p99_ms": 1e3 * cuts[98],
            "cpu_ms_per_call": 1e3 * sequential_cpu,
            "cpu_ms_per_call_concurrent": 1e3 * concurrent_cpu,
            "calls_per_second": args.concurrent_calls / wall}


def markdown(results: dict[str, dict[str, float]], args: argparse.Namespace) -> str:
    lines = [f"GET /scale from the emulator over loopback; {args.calls} calls one at a time, "
             f"{args.concurrent_calls} at {args.concurrency} at a time; the median of "
             f"{args.rounds} child processes per client.", "",
             "| client | p50 ms | p99 ms | CPU ms/call | CPU ms/call concurrent | calls/s "
             "| threads created | import RSS MB |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                     f"{r['cpu_ms_per_call']:.2f} | {r['cpu_ms_per_call_concurrent']:.2f} | "
                     f"{r['calls_per_second']:.0f} | {r['threads_created']:.0f} | "
                     f"{r['import_rss_mb']:.1f} |")
    return "\n".join(lines)


CLIENTS: dict[str, Callable[[Path], Any]] = {
    "foreseer Cluster (kubernetes, thread pool)": shipped,
    "kubernetes_asyncio": kubernetes_asyncio_client,
    "lightkube": lightkube_client,
}
"""The clients measured: each an async context manager giving a `Call`."""
