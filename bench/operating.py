"""`python -m foreseer.bench operator`: the operator's cost at N = 10, 100 and 1000 policies.

For each N, the benchmark process hosts the realistic emulator (`foreseer.lab`) with N
Deployments and N ScalingPolicies, and a live exporter with N workloads scraped by a real
Prometheus holding a backfilled day of history. The operator runs as `foreseer run` in its
own process, so its CPU and memory are measured apart from the emulator's:

- ``cpu_seconds_per_tick``: CPU seconds of the operator's main process per interval in
  which every policy ticks once (the target is < 30: one core at a 30s interval);
  ``fit_cpu_seconds_per_tick`` is its fitting workers' CPU over the same intervals;
- ``tick_p99_ms`` and ``decide_p99_ms``: from the operator's own latency histograms on
  /metrics, over the measured interval (linear interpolation inside a bucket, as
  PromQL's histogram_quantile);
- ``fit_seconds_p50``: the median model fit (in the fitting pool) over the run;
- ``rss_mb``: resident memory of the operator and its fitting workers at the end (summed,
  so pages they share count twice); ``operator_rss_mb`` is the main process alone;
  ``pss_mb`` the same sum with each shared page split between the processes sharing it
  (what the pod's memory really holds);
- ``forecasting``: policies with a forecast (a fitted model) at the end. Before measuring,
  the run waits until every policy forecasts (or ``--fit-deadline`` passes): memory with
  a model per policy is the steady state, and 1000 first fits take about 1000 x the fit
  time on one worker (``warmup_seconds``).

It needs the lab: install the ``[bench]`` extra, which includes ``[lab]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import kmock
from prometheus_client.parser import text_string_to_metric_families
from tqdm import tqdm

from foreseer.bench.processes import cpu_seconds, pss_mb, rss_mb, workers_cpu_seconds
from foreseer.lab.emulator import DEPLOYMENTS, deployment, scalingpolicy_crd, serving
from foreseer.lab.exporter import Exporter, Workload
from foreseer.lab.prometheus import PrometheusServer, free_port, openmetrics
from foreseer.lab.waiting import until
from foreseer.operator.specs import GROUP, PLURAL, VERSION

HERE = Path(__file__).resolve().parent
POLICIES = kmock.resource(GROUP, VERSION, PLURAL)
HISTORY_STEP = 60.0
HISTORY_SECONDS = 86400.0


@dataclass(frozen=True)
class Run:
    policies: int
    cpu_seconds_per_tick: float
    tick_p99_ms: float
    decide_p99_ms: float
    fit_seconds_p50: float | None
    rss_mb: float
    operator_rss_mb: float
    """The main process alone (its models and histories, but not the fitting workers)."""
    tick_p50_ms: float
    fit_cpu_seconds_per_tick: float
    """CPU of the fitting workers per interval (a fit takes seconds; it runs at low priority)."""
    forecasting: int
    """Policies with a forecast (a fitted model) at the end of the run."""
    ticks: int
    """Policy ticks seen in the measured window (about policies x measured intervals)."""
    ticks_per_policy_interval: float
    """Ticks per policy and interval, over the window as it really elapsed between the two
    scrapes (a little longer than the intervals asked for): 1.0 when every policy ticks
    once per interval."""
    fits: int
    """Model fits that finished during the run."""
    harness_cpu_seconds_per_tick: float
    """CPU of the benchmark process itself (emulator and exporter) per interval: when it
    nears the interval, the harness, not the operator, limits how many ticks complete."""
    pss_mb: float
    """Proportional memory of the operator and its workers: shared pages counted once."""
    warmup_seconds: float
    """From the first ticks until every policy forecast (or the fit deadline passed)."""
    status_writes_per_policy_hour: float
    """Status patches the operator sent per policy and hour over the measured window."""
    events_per_policy_hour: float
    """Events it posted per policy and hour over the measured window."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--policies",
        default="10,100,1000",
        help="comma-separated policy counts (default 10,100,1000)",
    )
    parser.add_argument("--interval", type=float, default=30.0, help="policy interval, seconds")
    parser.add_argument(
        "--intervals",
        type=int,
        default=3,
        help="intervals measured per count, after one of warm-up",
    )
    parser.add_argument(
        "--fit-deadline",
        type=float,
        default=3600.0,
        help="most seconds to wait for every policy's first model before measuring",
    )
    parser.add_argument(
        "--fit-workers",
        type=int,
        default=1,
        help="the operator's fitting processes (1 leaves a core to the rest)",
    )
    parser.add_argument(
        "--steady-minutes",
        type=float,
        default=30.0,
        help="minutes of the steady run (10 policies, flat load, nothing to scale) that "
        "measures status writes and events per policy-hour; 0 skips it",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=HERE / "results" / "operator.json",
        help="JSON results; the markdown table goes next to it (.md)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        counts = [int(part) for part in str(args.policies).split(",") if part.strip()]
    except ValueError:
        print(
            f"--policies must be comma-separated integers, got {args.policies!r}", file=sys.stderr
        )
        return 2
    if not counts or min(counts) < 1 or args.interval <= 0 or args.intervals < 1:
        print("--policies, --interval and --intervals must be positive", file=sys.stderr)
        return 2
    started = time.monotonic()
    runs = []
    for count in tqdm(counts, disable=not sys.stderr.isatty(), unit="run"):
        runs.append(asyncio.run(
            measure(count, args.interval, args.intervals, args.fit_workers, args.fit_deadline)
        ))
        print(json.dumps(asdict(runs[-1])), file=sys.stderr)
    steady = None
    if args.steady_minutes > 0:
        steady = asyncio.run(measure(
            STEADY_POLICIES, args.interval, max(1, round(args.steady_minutes * 60 / args.interval)),
            args.fit_workers, args.fit_deadline, load=flat))
        print(json.dumps(asdict(steady)), file=sys.stderr)
    report = {
        "interval_seconds": args.interval,
        "intervals_measured": args.intervals,
        "runs": [asdict(r) for r in runs],
        "steady": None if steady is None else {
            "minutes": args.steady_minutes, **asdict(steady)},
        "status_writes_per_policy_hour": None if steady is None
        else steady.status_writes_per_policy_hour,
        "events_per_policy_hour": None if steady is None else steady.events_per_policy_hour,
        "elapsed_seconds": round(time.monotonic() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return 0


def markdown(report: Mapping[str, Any]) -> str:
    lines = [
        f"# Operator benchmark (interval {report['interval_seconds']:g}s)",
        "",
        "`make bench-operator`: N policies against the realistic emulator and a real Prometheus; "
        "the operator runs as `foreseer run` and is measured from outside (CPU and RSS from "
        "/proc, latencies from its own histograms). CPU s/tick is the operator's main-process "
        "CPU per interval, fit CPU its fitting workers'; ticks/policy is how many of the "
        "expected ticks per interval completed; forecasting is how many policies had a fitted "
        "model (measured once every policy had one, or the fit deadline passed); RSS sums the "
        "operator and its workers (main: the operator alone), PSS the same with shared pages "
        "counted once.",
        "",
        "Targets: 1000 policies within one core (cpu s/tick < interval), RSS < 500 MB, "
        "decide() p99 < 5 ms.",
        "",
        "| policies | CPU s/tick | fit CPU s/tick | ticks/policy | tick p50 ms | tick p99 ms "
        "| decide p99 ms | fit s p50 | fits | forecasting | RSS MB | main RSS MB | PSS MB "
        "| warm-up s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["runs"]:
        fit = "-" if r["fit_seconds_p50"] is None else f"{r['fit_seconds_p50']:.2f}"
        done = r["ticks_per_policy_interval"]
        lines.append(f"| {r['policies']} | {r['cpu_seconds_per_tick']:.2f} | "
                     f"{r['fit_cpu_seconds_per_tick']:.2f} | {done:.2f} | "
                     f"{r['tick_p50_ms']:.1f} | {r['tick_p99_ms']:.1f} | "
                     f"{r['decide_p99_ms']:.2f} | {fit} | {r['fits']} | {r['forecasting']} | "
                     f"{r['rss_mb']:.0f} | {r['operator_rss_mb']:.0f} | {r['pss_mb']:.0f} | "
                     f"{r['warmup_seconds']:.0f} |")
    steady = report.get("steady")
    if steady:
        lines += ["", f"Steady state ({steady['policies']} policies, flat load with nothing to "
                  f"scale, {steady['minutes']:g} min at the CRD defaults but history 1d): "
                  f"**{steady['status_writes_per_policy_hour']:.1f} status writes** and "
                  f"**{steady['events_per_policy_hour']:.1f} Events** per policy-hour "
                  "(target: at most 12 status writes; 120 before writes were change-only)."]
    lines += ["", f"Elapsed: {report['elapsed_seconds']}s.", ""]
    return "\n".join(lines)


STEADY_POLICIES = 10


def flat(index: int) -> Any:
    """A load that never moves: 100, which 2 replicas at 50 each carry exactly."""
    return lambda t: 100.0


def daily(index: int) -> Any:
    """A different daily curve per workload, so the models are not all the same."""
    phase = 3600.0 * (index % 24)
    base = 100.0 + 10 * (index % 7)
    return lambda t: base + 0.6 * base * math.cos(2 * math.pi * (t - phase) / 86400.0)


@contextlib.asynccontextmanager
async def lab(count: int, load: Any, workdir: Path) -> AsyncIterator[tuple[Any, PrometheusServer,
                                                                          Path]]:
    """The emulator with ``count`` Deployments, a live exporter of their ``load`` and a real
    Prometheus holding a backfilled day of it: (emulator, prometheus, kubeconfig)."""
    async with serving() as emulator, Exporter() as exporter:
        emulator.install_crd(scalingpolicy_crd())
        now = time.time()
        texts = []
        for i in range(count):
            name, namespace = f"app-{i}", f"ns-{i % 10}"
            await emulator.create_object(DEPLOYMENTS, deployment(name, namespace, 2))
            workload = Workload(name, namespace, load(i), lambda: 2)
            exporter.workloads.append(workload)
            # The labels the live scrape adds too, so that past and present are one series.
            labels = {"app": name, "namespace": namespace, "job": "exporter",
                      "instance": exporter.target}
            texts.append(openmetrics("workload_load", labels, workload.history(
                now - HISTORY_SECONDS, now, HISTORY_STEP)))
        prometheus = PrometheusServer(workdir / "prometheus", [exporter.target], "15s")
        await asyncio.to_thread(prometheus.backfill, *texts)
        await asyncio.to_thread(prometheus.start)
        try:
            yield emulator, prometheus, emulator.write_kubeconfig(workdir / "kubeconfig")
        finally:
            prometheus.close()
            emulator.close_watches()


async def measure(
    count: int, interval: float, intervals: int, fit_workers: int, fit_deadline: float,
    load: Any = daily,
) -> Run:
    with tempfile.TemporaryDirectory(prefix="foreseer-bench-") as tmp:
        workdir = Path(tmp)
        async with lab(count, load, workdir) as (emulator, prometheus, kubeconfig):
            port = free_port()
            log = (workdir / "operator.log").open("wb")
            operator = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "foreseer.operator",
                    "--standalone",
                    f"--prometheus-url={prometheus.url}",
                    f"--metrics-port={port}",
                    "--metrics-host=127.0.0.1",
                    f"--fit-workers={fit_workers}",
                    "--log-level=WARNING",
                ],
                env={**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONSAFEPATH": "1"},
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
            try:
                metrics_url = f"http://127.0.0.1:{port}/metrics"
                await wait_healthy(f"http://127.0.0.1:{port}/healthz", deadline=60)
                for i in range(count):
                    await emulator.create_object(POLICIES, policy_body(i, interval))
                # Warm-up: every policy has ticked at least once (status written).
                await until(lambda: all_ticked(emulator, count), 10 * interval + 120,
                            f"{count} policies' first ticks", interval=0.5)
                warming = time.monotonic()
                await _wait_forecasting(metrics_url, count, fit_deadline, interval)
                warmup = time.monotonic() - warming
                await asyncio.sleep(interval)  # one more interval to settle the first ticks
                started = time.monotonic()
                before, cpu_before = await scrape(metrics_url), cpu_seconds(operator.pid)
                workers_before = workers_cpu_seconds(operator.pid)
                harness_before = time.process_time()
                await asyncio.sleep(intervals * interval)
                elapsed = (time.monotonic() - started) / interval  # intervals, really
                after, cpu_after = await scrape(metrics_url), cpu_seconds(operator.pid)
                workers_cpu = workers_cpu_seconds(operator.pid) - workers_before
                harness_cpu = time.process_time() - harness_before
                rss, operator_rss = rss_mb(operator.pid), rss_mb(operator.pid, children=False)
                pss = pss_mb(operator.pid)
            finally:
                operator.send_signal(signal.SIGTERM)
                try:
                    operator.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    operator.kill()
                    operator.wait(timeout=10)
                log.close()
    ticks = int(_count(after, "foreseer_tick_seconds") - _count(before, "foreseer_tick_seconds"))
    fits = int(_count(after, "foreseer_fit_seconds"))
    hours = elapsed * interval / 3600 * count
    writes = _total(after, "foreseer_status_writes_total") - _total(
        before, "foreseer_status_writes_total")
    events = _total(after, "foreseer_events_total") - _total(before, "foreseer_events_total")
    return Run(
        policies=count,
        cpu_seconds_per_tick=round((cpu_after - cpu_before) / elapsed, 3),
        tick_p99_ms=round(
            1000 * _quantile(_delta(after, before, "foreseer_tick_seconds"), 0.99), 2
        ),
        decide_p99_ms=round(
            1000 * _quantile(_delta(after, before, "foreseer_decision_seconds"), 0.99), 3
        ),
        fit_seconds_p50=(
            round(_quantile(_buckets(after, "foreseer_fit_seconds"), 0.5), 3) if fits else None
        ),
        rss_mb=round(rss, 1),
        operator_rss_mb=round(operator_rss, 1),
        tick_p50_ms=round(
            1000 * _quantile(_delta(after, before, "foreseer_tick_seconds"), 0.5), 2
        ),
        fit_cpu_seconds_per_tick=round(workers_cpu / elapsed, 3),
        forecasting=forecasting_count(after),
        ticks=ticks,
        ticks_per_policy_interval=round(ticks / (count * elapsed), 3),
        fits=fits,
        harness_cpu_seconds_per_tick=round(harness_cpu / elapsed, 3),
        pss_mb=round(pss, 1),
        warmup_seconds=round(warmup, 1),
        status_writes_per_policy_hour=round(writes / hours, 2),
        events_per_policy_hour=round(events / hours, 2),
    )


def policy_body(i: int, interval: float) -> dict[str, Any]:
    name, namespace = f"app-{i}", f"ns-{i % 10}"
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ScalingPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": 1,
            "maxReplicas": 50,
            "interval": f"{interval:g}s",
            "metrics": [
                {
                    "name": "load",
                    "targetPerReplica": 50.0,
                    "query": f'workload_load{{app="{name}",namespace="{namespace}"}}',
                }
            ],
            "forecast": {"history": "1d", "step": "1m"},
        },
    }


def all_ticked(emulator: Any, count: int) -> bool:
    done = emulator.count_objects(
        POLICIES, lambda body: bool((body.get("status") or {}).get("recommendation")))
    return bool(done >= count)


def forecasting_count(samples: Samples) -> int:
    """Policies with a forecast value on /metrics: those holding a fitted model."""
    return len({(dict(labels)["namespace"], dict(labels)["policy"])
                for (name, labels) in samples if name == "foreseer_forecast_value"})


async def _wait_forecasting(url: str, count: int, deadline: float, every: float) -> None:
    """Until every policy forecasts, or ``deadline`` seconds (then measure what there is)."""
    end = time.monotonic() + deadline
    with tqdm(total=count, disable=not sys.stderr.isatty(), unit="model", leave=False) as bar:
        while True:
            forecasting = forecasting_count(await scrape(url))
            bar.update(forecasting - bar.n)
            if forecasting >= count or time.monotonic() > end:
                return
            await asyncio.sleep(every)


async def wait_healthy(url: str, deadline: float) -> None:
    end = time.monotonic() + deadline
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > end:
                raise TimeoutError(f"the operator was not healthy within {deadline:.0f}s")
            await asyncio.sleep(0.5)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(url: str) -> Samples:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        text = await response.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _buckets(samples: Samples, histogram: str) -> dict[float, float]:
    """Cumulative bucket counts of a histogram, summed over every label set but ``le``."""
    total: dict[float, float] = {}
    for (name, labels), value in samples.items():
        if name == f"{histogram}_bucket":
            le = float(dict(labels)["le"])
            total[le] = total.get(le, 0.0) + value
    return total


def _delta(after: Samples, before: Samples, histogram: str) -> dict[float, float]:
    a, b = _buckets(after, histogram), _buckets(before, histogram)
    return {le: a[le] - b.get(le, 0.0) for le in a}


def _count(samples: Samples, histogram: str) -> float:
    return sum(v for (name, _), v in samples.items() if name == f"{histogram}_count")


def _total(samples: Samples, counter: str) -> float:
    """A counter summed over every label set."""
    return sum(v for (name, _), v in samples.items() if name == counter)


def _quantile(buckets: Mapping[float, float], q: float) -> float:
    """histogram_quantile: linear interpolation inside the bucket holding the q-th rank."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return math.nan
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for le in bounds:
        if buckets[le] >= rank:
            if math.isinf(le):
                return lower
            share = (rank - below) / (buckets[le] - below) if buckets[le] > below else 0.0
            return lower + (le - lower) * share
        lower, below = le, buckets[le]
    return lower
