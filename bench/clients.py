"""`python -m foreseer.bench.clients`: what the operator's Prometheus source costs per query.

It starts a real Prometheus (`foreseer.lab.prometheus`) holding ``--days`` + 1 days of one
backfilled series at 60 s steps, then measures `foreseer.operator.sources.Prometheus`, the
class the operator uses, in a fresh child process of its own (so that the CPU, the threads
and the memory are the source's, not the benchmark's or Prometheus'):

- ``rss_mb_after_import``: resident memory of the child once ``foreseer.operator.sources``
  is imported (``rss_mb_interpreter``: before, the bare interpreter and asyncio);
  ``rss_mb_operator``: once the whole operator (``foreseer.operator.running``: Kopf, the
  Kubernetes client, aiohttp) is imported too, which shares some of the source's libraries;
- ``sequential_p50_ms`` / ``sequential_p99_ms``: latency of one ``current()`` (an instant
  query and its ``max(timestamp(...))``, concurrently) awaited one after another;
- ``concurrent_per_second``: ``current()`` calls completed per second when ``--concurrent``
  of them are awaited at once (the median of ``--rounds`` rounds);
- ``history_seconds``: one full ``history()`` read of a ``--days`` window at 60 s steps
  (range queries of at most 10,000 points each; median of ``--rounds`` reads, each of a
  new key so none is incremental);
- ``cpu_ms_per_query``: CPU of the child (every thread) per HTTP query, over the
  sequential and the concurrent calls (each ``current()`` is two queries);
- ``threads_created``: the most threads the child had beyond those it had before the
  source was constructed.

Every reading is checked to be the backfilled value; errors are counted, never timed as
answers. The JSON goes to ``--out``; ``--against URL`` measures an already running
Prometheus in this process instead (it must hold ``bench_load`` up to now).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from foreseer.bench.processes import rss_mb, threads

HERE = Path(__file__).resolve().parent
STEP = 60.0
DAY = 86400.0
METRIC = "bench_load"
QUERY = f'sum({METRIC}{{app="web"}})'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sequential", type=int, default=1000,
                        help="current() calls timed one after another (after 20 untimed)")
    parser.add_argument("--concurrent", type=int, default=200,
                        help="current() calls awaited at once, per round")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds of concurrent calls, and full history reads")
    parser.add_argument("--days", type=float, default=14.0, help="the history window, days")
    parser.add_argument("--label", default="", help="a name for this run in the JSON")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "clients.json",
                        help="JSON results")
    parser.add_argument("--against", metavar="URL", default=None,
                        help="measure in this process against this running Prometheus")
    parser.add_argument("--now", type=float, default=None, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    if min(args.sequential, args.concurrent, args.rounds) < 1 or args.days <= 0:
        print("--sequential, --concurrent, --rounds and --days must be positive",
              file=sys.stderr)
        return 2
    if args.against:
        now = args.now if args.now is not None else math.floor(time.time() / STEP) * STEP
        print(json.dumps(measure(args.against, now, args.sequential, args.concurrent,
                                 args.rounds, args.days)))
        return 0
    result = {"label": args.label, "commit": _commit(), **backfilled_run(args)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    return 0


def backfilled_run(args: argparse.Namespace) -> dict[str, Any]:
    """Start a backfilled Prometheus, measure in a child process, return its numbers."""
    import numpy as np

    from foreseer.lab.prometheus import openmetrics, running
    from foreseer.predictors.series import Series

    now = math.floor(time.time() / STEP) * STEP
    points = int((args.days + 1) * DAY / STEP)
    start = now - (points - 1) * STEP
    t = start + np.arange(points) * STEP
    load = Series(start, STEP, 100 + 40 * np.sin(2 * np.pi * t / DAY))
    with tempfile.TemporaryDirectory(prefix="foreseer-bench-clients-") as tmp, \
            running(Path(tmp), (), openmetrics(METRIC, {"app": "web"}, load)) as prometheus:
        child = subprocess.run(
            [sys.executable, "-m", "foreseer.bench.clients", "--against", prometheus.url,
             "--now", repr(now), "--sequential", str(args.sequential),
             "--concurrent", str(args.concurrent), "--rounds", str(args.rounds),
             "--days", str(args.days)],
            capture_output=True, text=True, timeout=1800, check=False)
    if child.returncode != 0:
        raise RuntimeError(f"the measuring process failed:\n{child.stderr}")
    measured: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    expected = float(load.values[-1])
    if abs(measured.pop("last_value") - expected) > 1e-6 * expected:
        raise RuntimeError("the source did not read the backfilled value")
    return measured


def measure(url: str, now: float, sequential: int, concurrent: int, rounds: int,
            days: float) -> dict[str, Any]:
    """Import the source, then time it against `url`; runs in the measured process."""
    interpreter = rss_mb(os.getpid(), children=False)
    sources = importlib.import_module("foreseer.operator.sources")
    settings = importlib.import_module("foreseer.operator.settings")
    after_import = rss_mb(os.getpid(), children=False)
    importlib.import_module("foreseer.operator.running")
    operator = rss_mb(os.getpid(), children=False)
    threads_before = threads(os.getpid())
    result = asyncio.run(_measure(sources.Prometheus(settings.PrometheusSettings(url=url)), now,
                                  sequential, concurrent, rounds, days, threads_before))
    return {"rss_mb_interpreter": round(interpreter, 1),
            "rss_mb_after_import": round(after_import, 1),
            "rss_mb_operator": round(operator, 1), **result}


async def _measure(source: Any, now: float, sequential: int, concurrent: int, rounds: int,
                   days: float, threads_before: int) -> dict[str, Any]:
    errors = 0
    peak_threads = threads_before
    last = math.nan

    def check(reading: object) -> None:
        nonlocal errors, last
        if isinstance(reading, float):
            last = reading
        else:
            errors += 1

    try:
        for _ in range(20):  # connections, imports on first use
            check(await source.current(QUERY, now))
        latencies = []
        cpu = time.process_time()
        for _ in range(sequential):
            began = time.perf_counter()
            reading = await source.current(QUERY, now)
            latencies.append(time.perf_counter() - began)
            check(reading)
        sequential_cpu = time.process_time() - cpu
        peak_threads = max(peak_threads, threads(os.getpid()))

        walls = []
        cpu = time.process_time()
        for _ in range(rounds):
            began = time.perf_counter()
            readings = await asyncio.gather(*(source.current(QUERY, now)
                                              for _ in range(concurrent)))
            walls.append(time.perf_counter() - began)
            peak_threads = max(peak_threads, threads(os.getpid()))
            for reading in readings:
                check(reading)
        concurrent_cpu = time.process_time() - cpu

        histories, history_cpu = [], []
        for r in range(rounds):
            cpu, began = time.process_time(), time.perf_counter()
            series = await source.history(("bench", f"policy-{r}", "load"), QUERY, step=STEP,
                                          window=days * DAY, now=now)
            histories.append(time.perf_counter() - began)
            history_cpu.append(time.process_time() - cpu)
            peak_threads = max(peak_threads, threads(os.getpid()))
            if series is None or series.observed() != len(series):
                errors += 1
    finally:
        await source.close()
    queries = 2 * (sequential + rounds * concurrent)
    latencies.sort()
    return {
        "sequential_p50_ms": round(1000 * _quantile(latencies, 0.5), 2),
        "sequential_p99_ms": round(1000 * _quantile(latencies, 0.99), 2),
        "concurrent": concurrent,
        "concurrent_per_second": round(concurrent / statistics.median(walls), 1),
        "history_days": days,
        "history_seconds": round(statistics.median(histories), 3),
        "history_cpu_seconds": round(statistics.median(history_cpu), 3),
        "cpu_ms_per_query": round(1000 * (sequential_cpu + concurrent_cpu) / queries, 3),
        "cpu_ms_per_query_sequential": round(1000 * sequential_cpu / (2 * sequential), 3),
        "cpu_ms_per_query_concurrent": round(1000 * concurrent_cpu
                                             / (2 * rounds * concurrent), 3),
        "threads_created": peak_threads - threads_before,
        "errors": errors,
        "last_value": last,
    }


def markdown(result: dict[str, Any]) -> str:
    return "\n".join([
        "| client | current() p50 / p99 | current() per s, "
        f"{result['concurrent']} at once | history {result['history_days']:g} d at 60 s "
        "| CPU per query | threads created | RSS after import (whole operator) |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| {result['label'] or result['commit']} | {result['sequential_p50_ms']:.2f} / "
        f"{result['sequential_p99_ms']:.2f} ms | {result['concurrent_per_second']:.0f} "
        f"| {result['history_seconds']:.2f} s | {result['cpu_ms_per_query']:.2f} ms "
        f"| {result['threads_created']} | {result['rss_mb_after_import']:.0f} MB "
        f"({result['rss_mb_operator']:.0f} MB) |",
    ]) + (f"\n\n{result['errors']} readings were errors" if result["errors"] else "")


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def _commit() -> str:
    found = subprocess.run(["git", "-C", str(HERE), "describe", "--always", "--dirty"],
                           capture_output=True, text=True, check=False)
    return found.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m foreseer.bench.clients",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
