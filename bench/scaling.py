"""`python -m foreseer.bench scale`: policies sharded on Leases across operator replicas.

The benchmark process hosts the realistic emulator with N Deployments and N
ScalingPolicies, a live exporter and a real Prometheus with a backfilled day (the operator
benchmark's `lab`). R replicas run as `foreseer run --shards R`, each in its own process,
with one fitting worker. After every policy has a forecast:

- ``cpu_seconds_per_interval_max_replica`` and ``rss_mb_max_replica``: the busiest
  replica's CPU per interval (main process and its fitting worker) over the measured
  intervals, and the largest RSS (main process plus worker);
- ``policies_lost`` / ``policies_double_acted``: policies no replica ticked, or that two
  replicas ticked, in the measured intervals (from each replica's own tick counters);
- ``api_writes_per_second``: changes the emulator made to policies, Deployments (their
  /scale), Events and Leases over the measured intervals, as its watches report them (a
  write that changes nothing is not counted, as it is not on a real API server);
- ``failover_seconds``: one replica is killed (SIGKILL: no hand-over); the time until every
  one of its policies has been ticked by another replica;
- ``warm_restart_seconds_to_full_coverage``: every replica is restarted in turn (SIGTERM,
  then a new process with the same identity, once the old one is gone); the time from the
  last start until every policy forecasts again. The replicas share one model store (a
  directory, as a ReadWriteMany volume would be), so a restarted replica, and one taking a
  shard over, reads the models instead of refitting them.

On this machine (2 cores) the default is 4 replicas and 200 policies, not issue 15's 10
and 10,000; the figures per replica are what scale, and the report says what was run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kmock

from foreseer.bench.operating import (
    POLICIES,
    Samples,
    all_ticked,
    daily,
    forecasting_count,
    lab,
    policy_body,
    scrape,
    wait_healthy,
)
from foreseer.bench.processes import cpu_seconds, rss_mb, workers_cpu_seconds
from foreseer.lab.emulator import DEPLOYMENTS, EVENTS
from foreseer.lab.prometheus import free_port
from foreseer.lab.waiting import until

HERE = Path(__file__).resolve().parent
TARGETS = {
    "cpu_seconds_per_interval_max_replica": "at most the interval (one core)",
    "rss_mb_max_replica": 500,
    "policies_lost": 0,
    "policies_double_acted": 0,
    "failover_seconds": 60,
    "warm_restart_seconds_to_full_coverage": 60,
    "api_writes_per_second": 50,
}
WRITTEN = (POLICIES, DEPLOYMENTS, EVENTS, kmock.resource("coordination.k8s.io", "v1", "leases"))
"""What the operators write: policy status, /scale, Events and Leases."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policies", type=int, default=200, help="policies (default 200)")
    parser.add_argument("--replicas", type=int, default=4, help="operator replicas (default 4)")
    parser.add_argument("--interval", type=float, default=30.0, help="policy interval, seconds")
    parser.add_argument("--intervals", type=int, default=3, help="intervals measured")
    parser.add_argument("--lease-seconds", type=float, default=15.0)
    parser.add_argument("--renew-seconds", type=float, default=5.0)
    parser.add_argument("--fit-deadline", type=float, default=1800.0,
                        help="most seconds to wait for every policy's first model")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "scale.json")


@dataclass
class Replica:
    identity: str
    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start(identity: str, replicas: int, args: argparse.Namespace, prometheus_url: str,
          kubeconfig: Path, workdir: Path) -> Replica:
    """A replica with the shared model store in ``workdir`` (a ReadWriteMany volume's part)."""
    port = free_port()
    key = workdir / "model-key"
    if not key.exists():
        key.write_bytes(os.urandom(32).hex().encode())
    log = (workdir / f"operator-{identity}.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "foreseer.operator", f"--prometheus-url={prometheus_url}",
         f"--shards={replicas}", f"--shard-identity={identity}", "--lease-namespace=foreseer",
         f"--lease-seconds={args.lease_seconds:g}",
         f"--lease-renew-seconds={args.renew_seconds:g}", f"--metrics-port={port}",
         "--metrics-host=127.0.0.1", "--fit-workers=1", "--log-level=WARNING",
         f"--model-dir={workdir / 'models'}", f"--model-key-file={key}"],
        env={**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONSAFEPATH": "1"},
        stdout=subprocess.DEVNULL, stderr=log)
    return Replica(identity, process, port)


def stop(replica: Replica, sig: int = signal.SIGTERM) -> None:
    if replica.process.poll() is None:
        replica.process.send_signal(sig)
        try:
            replica.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            replica.process.kill()
            replica.process.wait(timeout=10)


def ticks(samples: Samples) -> dict[tuple[str, str], float]:
    """Finished ticks per policy, from one replica's /metrics."""
    out = {}
    for (name, labels), value in samples.items():
        if name == "foreseer_tick_seconds_count":
            tags = dict(labels)
            out[tags["namespace"], tags["policy"]] = value
    return out


async def scrape_all(replicas: Sequence[Replica]) -> dict[str, Samples]:
    return {r.identity: await scrape(f"{r.url}/metrics") for r in replicas
            if r.process.poll() is None}


def ticked_by(before: Mapping[str, Samples], after: Mapping[str, Samples]
              ) -> dict[tuple[str, str], set[str]]:
    """Which replicas ticked each policy between two scrapes of every replica."""
    out: dict[tuple[str, str], set[str]] = {}
    for identity, samples in after.items():
        old = ticks(before.get(identity, {}))
        for policy, value in ticks(samples).items():
            if value > old.get(policy, 0.0):
                out.setdefault(policy, set()).add(identity)
    return out


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    count, interval = args.policies, args.interval
    every = [(f"ns-{i % 10}", f"app-{i}") for i in range(count)]
    with tempfile.TemporaryDirectory(prefix="foreseer-scale-") as tmp:
        workdir = Path(tmp)
        async with lab(count, daily, workdir) as (emulator, prometheus, kubeconfig):
            await emulator.create_object("v1/namespaces", {"metadata": {"name": "foreseer"}})
            replicas = [start(f"r{i}", args.replicas, args, prometheus.url, kubeconfig, workdir)
                        for i in range(args.replicas)]
            try:
                for r in replicas:
                    await wait_healthy(f"{r.url}/healthz", deadline=60)
                for i in range(count):
                    await emulator.create_object(POLICIES, policy_body(i, interval))
                await until(lambda: all_ticked(emulator, count), 10 * interval + 120,
                            f"{count} policies' first ticks", interval=0.5)
                warming = time.monotonic()
                await wait_forecasting(replicas, count, args.fit_deadline, interval)
                warmup = time.monotonic() - warming

                # Steady state: cost per replica, ownership, API writes.
                before = await scrape_all(replicas)
                cpu_before = {r.identity: cpu_seconds(r.process.pid)
                              + workers_cpu_seconds(r.process.pid) for r in replicas}
                changes = [emulator.subscribe(r) for r in WRITTEN]
                started = time.monotonic()
                await asyncio.sleep(args.intervals * interval)
                elapsed = time.monotonic() - started
                after = await scrape_all(replicas)
                api_writes = sum(queue.qsize() for queue in changes)
                for queue in changes:
                    emulator.unsubscribe(queue)
                cpu = {r.identity: (cpu_seconds(r.process.pid)
                                    + workers_cpu_seconds(r.process.pid)
                                    - cpu_before[r.identity]) / (elapsed / interval)
                       for r in replicas}
                rss = {r.identity: rss_mb(r.process.pid) for r in replicas}
                acted = ticked_by(before, after)
                lost = [p for p in every if not acted.get(p)]
                double = [p for p in every if len(acted.get(p, ())) > 1]
                share = {r.identity: sum(1 for who in acted.values() if r.identity in who)
                         for r in replicas}

                # Failover: kill one replica outright; its policies must be ticked elsewhere.
                victim = replicas[0]
                orphans = [p for p, who in acted.items() if victim.identity in who]
                stop(victim, signal.SIGKILL)
                killed = time.monotonic()
                base = await scrape_all(replicas[1:])
                failover = await wait_covered(replicas[1:], base, orphans, 10 * interval)
                failover_seconds = None if failover is None else failover - killed
                taken = ticked_by(base, await scrape_all(replicas[1:]))
                double_after = [p for p, who in taken.items() if len(who) > 1]

                # Rolling restart of every replica (the killed one comes back first).
                replicas[0] = start(victim.identity, args.replicas, args, prometheus.url,
                                    kubeconfig, workdir)
                await wait_healthy(f"{replicas[0].url}/healthz", deadline=60)
                for k in range(1, len(replicas)):
                    stop(replicas[k])
                    replicas[k] = start(replicas[k].identity, args.replicas, args,
                                        prometheus.url, kubeconfig, workdir)
                    await wait_healthy(f"{replicas[k].url}/healthz", deadline=60)
                restarted = time.monotonic()
                covered = await wait_forecasting(replicas, count, args.fit_deadline, 5.0)
                warm_restart = None if covered is None else covered - restarted
            finally:
                for r in replicas:
                    stop(r)
    return {
        "policies": count,
        "replicas": args.replicas,
        "interval_seconds": interval,
        "lease_seconds": args.lease_seconds,
        "renew_seconds": args.renew_seconds,
        "intervals_measured": round(elapsed / interval, 2),
        "first_fit_warmup_seconds": round(warmup, 1),
        "policies_per_replica": share,
        "cpu_seconds_per_interval_per_replica": {k: round(v, 2) for k, v in cpu.items()},
        "cpu_seconds_per_interval_max_replica": round(max(cpu.values()), 2),
        "rss_mb_per_replica": {k: round(v, 1) for k, v in rss.items()},
        "rss_mb_max_replica": round(max(rss.values()), 1),
        "policies_lost": len(lost),
        "policies_double_acted": len(double) + len(double_after),
        "api_writes_per_second": round(api_writes / elapsed, 2),
        "failover_seconds": None if failover_seconds is None else round(failover_seconds, 1),
        "failover_policies": len(orphans),
        "warm_restart_seconds_to_full_coverage": (
            None if warm_restart is None else round(warm_restart, 1)),
        "targets": TARGETS,
    }


async def wait_covered(replicas: Sequence[Replica], base: Mapping[str, Samples],
                       policies: Sequence[tuple[str, str]], timeout: float) -> float | None:
    """When every one of ``policies`` has been ticked by one of ``replicas`` since ``base``
    (monotonic seconds), or None after ``timeout``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        acted = ticked_by(base, await scrape_all(replicas))
        if all(acted.get(p) for p in policies):
            return time.monotonic()
        await asyncio.sleep(1.0)
    return None


async def wait_forecasting(replicas: Sequence[Replica], count: int, deadline: float,
                           every: float) -> float | None:
    """When every policy forecasts on some replica (monotonic seconds), or None."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        samples = await scrape_all(replicas)
        if sum(forecasting_count(s) for s in samples.values()) >= count:
            return time.monotonic()
        await asyncio.sleep(every)
    return None


def markdown(report: Mapping[str, Any]) -> str:
    lines = [f"# Sharded operator benchmark ({report['replicas']} replicas, "
             f"{report['policies']} policies, interval {report['interval_seconds']:g}s)", "",
             "Generated by `python -m foreseer.bench scale`; see bench/scaling.py for what each "
             "figure measures.", "", "| figure | measured | target |", "|---|---|---|"]
    for key, target in TARGETS.items():
        lines.append(f"| {key} | {report[key]} | {target} |")
    lines += ["", f"Policies per replica: {report['policies_per_replica']}; CPU per interval "
              f"per replica: {report['cpu_seconds_per_interval_per_replica']}; first fits took "
              f"{report['first_fit_warmup_seconds']} s."]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    if args.policies < 1 or args.replicas < 2 or args.interval <= 0 or args.intervals < 1:
        print("--policies, --interval and --intervals must be positive, --replicas at least 2",
              file=sys.stderr)
        return 2
    started = time.monotonic()
    report = asyncio.run(measure(args))
    report["elapsed_seconds"] = round(time.monotonic() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    return 0
