"""`make demo`: the real operator scales a replayed real trace, next to a reactive twin.

Everything runs locally and is stopped at the end, also on Ctrl-C or an error:

- the realistic Kubernetes emulator (`foreseer.lab.emulator`) and its Deployment controller
  (`foreseer.lab.workloads`): new pods turn Ready only `ready_after` seconds after creation;
- a live exporter (`foreseer.lab.exporter`) and a real Prometheus
  (`foreseer.lab.prometheus`) holding `history_days` of the trace, backfilled with promtool,
  then scraping the exporter;
- the operator itself, ``python -m foreseer.operator``, in its own process group (with the
  process pool that fits its models);
- two Deployments under the same load: ``foreseer/web`` with a ScalingPolicy in Auto mode and
  ``reactive/web`` with the same policy in Reactive mode (the HPA algorithm), so that the
  comparison is between the ready capacities two real control loops achieved.

Time is compressed: one 5-minute step of the trace lasts one wall second (`step_seconds`), so a
day lasts 288 s, the history a few minutes, and the replayed morning two. The policies'
durations are compressed alike (the HPA's 5-minute scale-down window becomes one second); the
forecast step is one trace step. The default replays the NASA Kennedy Space Center web server
(HTTP requests per minute, August 1995, in the log's own zone, EDT) from the night through the
morning ramp, when a reactive autoscaler is behind by a pod start-up.

Run it with ``make demo`` (``python -m foreseer.lab.demo --help`` for options).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import csv
import datetime
import importlib.resources
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import kmock
import numpy as np

from foreseer.lab.emulator import DEPLOYMENTS, Emulator, deployment, scalingpolicy_crd, serving
from foreseer.lab.exporter import Exporter, Workload
from foreseer.lab.prometheus import PrometheusServer, free_port, openmetrics
from foreseer.lab.waiting import until
from foreseer.lab.workloads import DeploymentController, ready_replicas
from foreseer.operator.durations import parse_duration
from foreseer.operator.specs import GROUP, PLURAL, VERSION
from foreseer.simulator.scoring import Score, oracle_replicas, score, step_changes
from foreseer.simulator.traces import read_trace

# The traces ship as foreseer.bench package data, so the demo finds them installed or not.
TRACES = Path(str(importlib.resources.files("foreseer.bench") / "traces"))
POLICIES = kmock.resource(GROUP, VERSION, PLURAL)
TRACE_STEP = 300.0
"""Seconds of one replayed trace step: the trace's minutes are averaged over 5 minutes."""
MODES = {"foreseer": "Auto", "reactive": "Reactive"}
"""Namespace -> the mode of its policy; each namespace holds one Deployment ``web``."""
APP = "web"


@dataclass(frozen=True)
class DemoSettings:
    """What the demo replays and how fast."""

    trace: Path = TRACES / "nasa__http_requests_aug95.csv"
    """A `timestamp,value` trace (bench/traces); its values are the load per minute."""
    day: datetime.date = datetime.date(1995, 8, 17)
    """The replayed day (a Thursday: the week before it is the history)."""
    start_hour: float = 2.0
    """Local hour the replay starts at: the night, while the operator starts and fits."""
    hours: float = 10.0
    """Trace hours replayed live (10 h = 120 wall seconds at the default speed)."""
    utc_offset_hours: float = -4.0
    """The trace's local zone, for display and for `day`/`start_hour` (NASA's logs: EDT)."""
    history_days: float = 7.0
    """Trace days before the replay backfilled into Prometheus; the model is fitted on them."""
    step_seconds: float = 1.0
    """Wall seconds one 5-minute trace step lasts (1.0 = 300x faster than real time)."""
    ready_after: float = 6.0
    """Wall seconds from a pod's creation to Ready (6 s = 30 trace minutes: a new node,
    the image pull and a warm-up); the lead time foreseer measures and forecasts over."""
    target_per_replica: float = 5.0
    """Load one ready replica serves (requests per minute)."""
    max_replicas: int = 40
    """The policies' maxReplicas."""
    row_steps: int = 6
    """Trace steps between two rows of the live table (6 = every 30 trace minutes)."""
    out_dir: Path = Path("build") / "demo"
    """Where the plot, the samples (CSV) and the operator's log are written (relative to the
    working directory: `make demo` runs from the repository root)."""

    @property
    def speedup(self) -> float:
        return TRACE_STEP / self.step_seconds


@dataclass(frozen=True)
class Replay:
    """The trace on a 5-minute grid, mapped onto wall time: trace time `origin` is wall `anchor`."""

    times: np.ndarray
    """Trace unix times of the grid."""
    values: np.ndarray
    """Load (per minute, averaged over each 5-minute step)."""
    origin: float
    """Trace time of the replay's start."""
    anchor: float
    """Wall time the replay starts at."""
    speedup: float
    utc_offset: float
    """Seconds added to UTC for display."""

    def trace_time(self, wall: float) -> float:
        return self.origin + (wall - self.anchor) * self.speedup

    def load(self, wall: float) -> float:
        """The load at a wall time (what the exporter serves at that moment)."""
        return float(np.interp(self.trace_time(wall), self.times, self.values))

    def label(self, wall: float) -> str:
        """Local trace time, e.g. ``Thu 07:30``."""
        local = self.trace_time(wall) + self.utc_offset
        return datetime.datetime.fromtimestamp(local, datetime.UTC).strftime("%a %H:%M")


def replay_of(settings: DemoSettings, anchor: float) -> Replay:
    """The settings' trace, averaged to 5-minute steps, starting at wall time `anchor`.

    Raises ValueError when the trace does not cover the history and the replayed hours.
    """
    trace = read_trace(settings.trace)
    start = math.ceil(trace.start / TRACE_STEP) * TRACE_STEP
    times = np.arange(start, trace.end - TRACE_STEP + 1, TRACE_STEP)
    # Each step's mean of the per-minute trace: the load as a per-minute rate, less noisy.
    minutes = times[:, None] + np.arange(0.0, TRACE_STEP, 60.0)[None, :]
    values = trace.load(minutes).mean(axis=1)
    offset = settings.utc_offset_hours * 3600.0
    midnight = datetime.datetime.combine(settings.day, datetime.time(), datetime.UTC)
    origin = midnight.timestamp() - offset + settings.start_hour * 3600.0
    first, last = origin - settings.history_days * 86400.0, origin + settings.hours * 3600.0
    if first < times[0] or last > times[-1]:
        span = [datetime.datetime.fromtimestamp(t + offset, datetime.UTC).strftime("%Y-%m-%d %H:%M")
                for t in (times[0], times[-1])]
        raise ValueError(
            f"{settings.trace.name} covers {span[0]} to {span[1]} (local time); "
            f"{settings.history_days:g} days of history before {settings.day} "
            f"{settings.start_hour:g}h and {settings.hours:g} hours after it do not fit in it")
    return Replay(times, values, origin, anchor, settings.speedup, offset)


def policy_manifest(namespace: str, mode: str, settings: DemoSettings) -> dict[str, Any]:
    """The ScalingPolicy of one twin: identical but for the mode."""
    step = f"{settings.step_seconds:g}s"
    # The HPA's rate limits compressed like the trace: its 15 s periods become the shortest
    # period there is, a second. Its 5-minute scale-down window would be shorter than a pod's
    # start-up here, and every dip of the noisy load would delete the pods still starting
    # (unready pods go first); as anyone running slow-starting pods would, both twins keep
    # scale-downs for twice the start-up.
    period = max(1, round(settings.step_seconds))
    behavior = {
        "scaleUp": {"policies": [{"type": "Percent", "value": 100, "periodSeconds": period},
                                 {"type": "Pods", "value": 4, "periodSeconds": period}]},
        "scaleDown": {"stabilizationWindowSeconds": math.ceil(2 * settings.ready_after),
                      "policies": [{"type": "Percent", "value": 100, "periodSeconds": period}]},
    }
    history = f"{round(settings.history_days * 86400.0 / settings.speedup)}s"
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ScalingPolicy",
        "metadata": {"name": APP, "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
            "mode": mode, "minReplicas": 1, "maxReplicas": settings.max_replicas,
            "interval": step,
            "metrics": [{"name": "requests", "targetPerReplica": settings.target_per_replica,
                         "query": f'workload_load{{app="{APP}",namespace="{namespace}"}}'}],
            "forecast": {"history": history, "step": step, "horizon": "auto"},
            "behavior": behavior,
        },
    }


@dataclass(frozen=True)
class Sample:
    """One look at both twins."""

    wall: float
    load: float
    needed: int
    """Replicas the load needs right now."""
    ready: Mapping[str, int]
    """Ready replicas per namespace."""
    desired: Mapping[str, int]
    """spec.replicas per namespace."""
    forecast: float | None
    """The Auto policy's forecast (its quantile, over the horizon), when it has one."""
    trusted: bool
    horizon: float | None
    """Seconds ahead the forecast looks."""
    model: str | None


def observe(emulator: Emulator, replay: Replay, settings: DemoSettings, wall: float) -> Sample:
    ready, desired = {}, {}
    for namespace in MODES:
        body = emulator.read_object(DEPLOYMENTS, namespace, APP) or {}
        ready[namespace] = int(body.get("status", {}).get("readyReplicas", 0))
        desired[namespace] = int(body.get("spec", {}).get("replicas", 0))
    policy = emulator.read_object(POLICIES, "foreseer", APP) or {}
    forecast = (policy.get("status") or {}).get("forecast") or {}
    horizon = forecast.get("horizon")
    load = replay.load(wall)
    return Sample(
        wall=wall, load=load, needed=math.ceil(load / settings.target_per_replica),
        ready=ready, desired=desired, forecast=forecast.get("value"),
        trusted=bool(forecast.get("trusted")),
        horizon=parse_duration(horizon) if horizon else None, model=forecast.get("model"))


class Table:
    """The live table: one row per `row_steps` trace steps, figures over the rows' span."""

    HEADER = (f"{'trace time':<10} {'load':>6} {'forecast':>9} {'needed':>6} | "
              f"{'reactive':>8} {'foreseer':>8} | {'unserved: reactive':>18} {'foreseer':>8}")

    def __init__(self, replay: Replay, settings: DemoSettings) -> None:
        self.replay, self.settings = replay, settings
        self.pending: list[Sample] = []

    def start(self) -> None:
        print(self.HEADER)
        print("-" * len(self.HEADER), flush=True)

    def add(self, sample: Sample) -> None:
        self.pending.append(sample)
        if len(self.pending) >= self.settings.row_steps:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        rows, self.pending = self.pending, []
        last = rows[-1]
        share = {ns: s.unserved_load for ns, s in scores(rows, self.settings).items()}
        if last.forecast is None:
            forecast = "--"
        else:
            forecast = f"{last.forecast:.0f}" + (" " if last.trusted else "?")
        print(f"{self.replay.label(last.wall):<10} {last.load:>6.0f} {forecast:>9} "
              f"{last.needed:>6} | {last.ready['reactive']:>8} {last.ready['foreseer']:>8} | "
              f"{share['reactive']:>17.1%} {share['foreseer']:>9.1%}", flush=True)


def scores(samples: list[Sample], settings: DemoSettings) -> dict[str, Score]:
    """Each twin scored as `foreseer backtest` scores a policy: ready capacity against the
    load, replica-hours (of the pods that exist, starting ones too) against an oracle that
    starts each pod exactly one start-up before it is needed; in trace time."""
    load = np.array([s.load for s in samples])
    target, startup = settings.target_per_replica, settings.ready_after * settings.speedup
    _, oracle = oracle_replicas(load, target, startup, TRACE_STEP, 1, settings.max_replicas)
    oracle_hours = float(oracle.sum()) * TRACE_STEP / 3600.0
    events = step_changes(load, TRACE_STEP, target)
    result = {}
    for namespace in MODES:
        ready = np.array([s.ready[namespace] for s in samples], dtype=np.float64)
        paid = np.array([s.desired[namespace] for s in samples], dtype=np.float64)
        actions = int(np.count_nonzero(np.diff(paid)))
        result[namespace] = score(load, ready, paid, actions, target, TRACE_STEP,
                                  oracle_hours, events)
    return result


@dataclass
class Outcome:
    """What a demo run leaves: the samples, the plot, the summary and the processes it ran."""

    samples: list[Sample] = field(default_factory=list)
    plot: Path | None = None
    summary: str = ""
    process_groups: list[int] = field(default_factory=list)
    """Process groups the demo started (the operator with its fitting pool, Prometheus)."""


def summarize(samples: list[Sample], replay: Replay, settings: DemoSettings) -> str:
    """One paragraph: what was replayed, and what each twin left unserved and cost."""
    scored = scores(samples, settings)
    reactive, foreseer = scored["reactive"], scored["foreseer"]
    trusted = [s for s in samples if s.trusted]
    if not trusted:
        how = "Its forecast was never trusted, so it acted reactively throughout"
    else:
        models = ", ".join(sorted({s.model for s in trusted if s.model}))
        ahead = (trusted[-1].horizon or 0.0) * settings.speedup / 60.0
        how = (f"Its forecast ({models}, {ahead:.0f} trace minutes ahead: the start-up it "
               f"measured plus one interval) was trusted {len(trusted) / len(samples):.0%} of "
               f"the time, first at {replay.label(trusted[0].wall)[4:]}")
    if foreseer.unserved_load < reactive.unserved_load:
        verdict = (": the capacity it adds ahead of a rise is the price of not falling behind "
                   "it")
    else:
        verdict = "; on this stretch, forecasting did not serve more of the load than reacting"
    date = datetime.datetime.fromtimestamp(replay.trace_time(samples[0].wall) + replay.utc_offset,
                                           datetime.UTC)
    lead = settings.ready_after * settings.speedup / 60.0
    return (
        f"Replaying {settings.trace.stem} on {date:%A %d %B %Y} from "
        f"{replay.label(samples[0].wall)[4:]} to {replay.label(samples[-1].wall)[4:]} "
        f"(local time, {settings.speedup:g}x faster; new pods ready after {lead:.0f} trace "
        f"minutes; one replica serves {settings.target_per_replica:g} requests/min), the "
        f"reactive twin (the HPA algorithm) left {reactive.unserved_load:.1%} of the load "
        f"unserved and was short of capacity {reactive.underprov_time:.0%} of the time, while "
        f"foreseer in Auto mode left {foreseer.unserved_load:.1%} unserved and was short "
        f"{foreseer.underprov_time:.0%} of the time. {how}. Foreseer paid "
        f"{foreseer.replica_hours:.0f} replica-hours ({foreseer.replica_hours_vs_oracle:.2f}x "
        f"a perfect-foresight oracle) against the reactive twin's {reactive.replica_hours:.0f} "
        f"({reactive.replica_hours_vs_oracle:.2f}x){verdict}.")


def plot(samples: list[Sample], replay: Replay, settings: DemoSettings, path: Path) -> Path:
    """Load, forecast and both twins' ready capacity (top); ready replicas (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    def when(wall: float | np.ndarray) -> Any:
        local = replay.trace_time(np.asarray(wall)) + replay.utc_offset  # type: ignore[arg-type]
        return np.asarray(local, dtype="datetime64[s]")

    walls = np.array([s.wall for s in samples])
    target = settings.target_per_replica
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 7), sharex=True, dpi=100,
                                      gridspec_kw={"height_ratios": [3, 2]})
    top.plot(when(walls), [s.load for s in samples], color="black", lw=1.2, label="load")
    colors = {"reactive": "tab:orange", "foreseer": "tab:blue"}
    for namespace, color in colors.items():
        capacity = np.array([s.ready[namespace] * target for s in samples])
        top.step(when(walls), capacity, where="post", color=color, lw=1.0,
                 label=f"{namespace} ready capacity")
        top.fill_between(when(walls), capacity, [s.load for s in samples], step="post",
                         where=capacity < np.array([s.load for s in samples]), color=color,
                         alpha=0.25, lw=0)
        bottom.step(when(walls), [s.ready[namespace] for s in samples], where="post",
                    color=color, lw=1.2, label=f"{namespace} ready replicas")
    # Each forecast is drawn at the time it is for (issued one horizon earlier).
    ahead = [(s.wall + s.horizon, s.forecast) for s in samples
             if s.trusted and s.forecast is not None and s.horizon is not None]
    if ahead:
        top.plot(when(np.array([t for t, _ in ahead])), [v for _, v in ahead], ls="--",
                 color="tab:green", lw=1.0, label="foreseer forecast (q0.9), at its target time")
    bottom.step(when(walls), [s.needed for s in samples], where="post", color="grey", ls=":",
                label="replicas the load needs")
    top.set_ylabel("requests / minute")
    bottom.set_ylabel("replicas")
    bottom.set_xlabel("trace time (local)")
    bottom.xaxis.set_major_formatter(mdates.DateFormatter("%a %H:%M"))  # type: ignore[no-untyped-call]
    bottom.yaxis.set_major_locator(MaxNLocator(integer=True))
    top.set_title(f"foreseer demo: {settings.trace.stem}, replayed {settings.speedup:g}x faster "
                  "(shaded: unserved load)")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_samples(samples: list[Sample], replay: Replay, path: Path) -> None:
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["trace_time", "load", "needed", "forecast", "trusted", "model",
                      *(f"{ns}_ready" for ns in MODES), *(f"{ns}_desired" for ns in MODES)])
        for s in samples:
            out.writerow([replay.label(s.wall), f"{s.load:.2f}", s.needed,
                          "" if s.forecast is None else f"{s.forecast:.2f}", s.trusted,
                          s.model or "", *(s.ready[ns] for ns in MODES),
                          *(s.desired[ns] for ns in MODES)])


@contextlib.contextmanager
def operator_process(prometheus_url: str, kubeconfig: Path, port: int,
                     log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m foreseer.operator`` in its own process group; the whole group is stopped
    on exit (SIGTERM to the operator, then SIGKILL to anything of the group still alive)."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "foreseer.operator", "--standalone",
             f"--prometheus-url={prometheus_url}", "--prometheus-timeout=2",
             "--prometheus-retries=1", "--metrics-host=127.0.0.1", f"--metrics-port={port}",
             f"--namespaces={','.join(MODES)}", "--fit-workers=1", "--log-level=WARNING"],
            env={**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONSAFEPATH": "1"},
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def kill_group() -> None:
        # Even if a second Ctrl-C interrupts the graceful stop below, the group dies with us.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    atexit.register(kill_group)
    try:
        yield process
    finally:
        stop_group(process)
        atexit.unregister(kill_group)


def stop_group(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Stop a process started with its own session: gracefully, then its whole group."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout)
    # The fitting pool's workers share the group; none may outlive the demo.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=timeout)


async def kubectl_get_policies(kubeconfig: Path) -> str | None:
    """What ``kubectl get scalingpolicies -A`` shows (the CRD's printer columns); None when
    kubectl is not installed or does not answer in time."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    process = await asyncio.create_subprocess_exec(
        kubectl, f"--kubeconfig={kubeconfig}", "get", "scalingpolicies", "-A",
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        output, _ = await asyncio.wait_for(process.communicate(), 20)
    except TimeoutError:
        return None
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return output.decode(errors="replace").rstrip()


def child_groups() -> set[int]:
    """Process groups of this process's children other than its own (Linux /proc)."""
    groups = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # Fields after the command name, which may hold spaces: state, ppid, pgrp, ...
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == os.getpid() and int(fields[2]) != os.getpgrp():
                groups.add(int(fields[2]))
    return groups


async def wait_healthy(process: subprocess.Popen[bytes], port: int, log: Path,
                       timeout: float = 60.0) -> None:
    """Until the operator answers /healthz; fails at once, with its log, if it exits."""
    async with aiohttp.ClientSession() as session:
        async def healthy() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"the operator exited with {process.returncode}:\n"
                                   f"{log.read_text(errors='replace')[-3000:]}")
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz",
                                       timeout=aiohttp.ClientTimeout(total=1)) as response:
                    return response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                return False

        await until(healthy, timeout, "the operator answering /healthz", interval=0.2)


async def run(settings: DemoSettings, outcome: Outcome | None = None) -> Outcome:
    """The whole demo; `outcome` fills in as it goes, so a caller sees what ran even when it
    fails. Every process started here is stopped before this returns or raises."""
    outcome = outcome if outcome is not None else Outcome()
    settings.out_dir.mkdir(parents=True, exist_ok=True)
    loop = asyncio.get_running_loop()
    target = settings.target_per_replica
    with tempfile.TemporaryDirectory(prefix="foreseer-demo-") as tmp:
        workdir = Path(tmp)
        anchor = time.time()
        replay = replay_of(settings, anchor)
        print(f"foreseer demo: {settings.trace.stem}, {replay.label(anchor)} for "
              f"{settings.hours:g} trace hours, {settings.speedup:g}x faster "
              f"(1 s = {settings.speedup / 60:g} trace minutes)", flush=True)
        async with (serving() as emulator,
                    DeploymentController(emulator, ready_after=settings.ready_after),
                    Exporter() as exporter):
            emulator.install_crd(scalingpolicy_crd())
            start_replicas = math.ceil(replay.load(anchor) / target)
            texts = []
            for namespace in MODES:
                await emulator.create_object(
                    DEPLOYMENTS, deployment(APP, namespace, replicas=start_replicas))
                workload = Workload(APP, namespace, replay.load,
                                    ready_replicas(emulator, namespace, APP))
                exporter.workloads.append(workload)
                # The labels the live scrape adds, so that backfill and scrapes are one series.
                labels = {"app": APP, "namespace": namespace, "job": "exporter",
                          "instance": exporter.target}
                history = workload.history(
                    anchor - settings.history_days * 86400.0 / settings.speedup, anchor,
                    settings.step_seconds)
                texts.append(openmetrics("workload_load", labels, history))
            prometheus = PrometheusServer(workdir / "prometheus", [exporter.target])
            try:
                print(f"  backfilling {settings.history_days:g} trace days into Prometheus "
                      "(promtool), starting Prometheus and the operator ...", flush=True)
                await asyncio.to_thread(prometheus.backfill, *texts)
                others = child_groups()
                await asyncio.to_thread(prometheus.start)
                outcome.process_groups.extend(child_groups() - others)
                kubeconfig = emulator.write_kubeconfig(workdir / "kubeconfig")
                port, log = free_port(), settings.out_dir / "operator.log"
                with operator_process(prometheus.url, kubeconfig, port, log) as operator:
                    outcome.process_groups.append(os.getpgid(operator.pid))
                    await wait_healthy(operator, port, log)

                    def all_ready() -> bool:
                        return all(ready_replicas(emulator, ns, APP)() == start_replicas
                                   for ns in MODES)

                    # The twins start equal, and the start-up of these first pods is the lead
                    # time the operator measures for `horizon: auto`.
                    await until(all_ready, settings.ready_after + 30, "the first pods' start-up")
                    for namespace, mode in MODES.items():
                        await emulator.create_object(
                            POLICIES, policy_manifest(namespace, mode, settings))
                    print("  policies applied: foreseer/web (Auto) and reactive/web (Reactive)"
                          "\n  load: requests/min; forecast: foreseer's q0.9 forecast over the "
                          "next start-up ('?' = not trusted, '--' = no model yet);\n  needed, "
                          "reactive, foreseer: replicas (the twins' ready ones); unserved: load "
                          "beyond ready capacity\n", flush=True)
                    table = Table(replay, settings)
                    table.start()
                    end = anchor + settings.hours * 3600.0 / settings.speedup
                    tick = loop.time()
                    while time.time() < end:
                        sample = observe(emulator, replay, settings, time.time())
                        outcome.samples.append(sample)
                        table.add(sample)
                        tick += settings.step_seconds
                        await asyncio.sleep(max(0.0, tick - loop.time()))
                    table.flush()
                    listing = await kubectl_get_policies(kubeconfig)
                    if listing:
                        print(f"\n$ kubectl get scalingpolicies -A   # against the emulator\n"
                              f"{listing}", flush=True)
            finally:
                prometheus.close()
    if not outcome.samples:
        raise RuntimeError("the replay ended before the first sample: more hours are needed")
    write_samples(outcome.samples, replay, settings.out_dir / "demo.csv")
    outcome.plot = plot(outcome.samples, replay, settings, settings.out_dir / "demo.png")
    outcome.summary = summarize(outcome.samples, replay, settings)
    return outcome


def parse_args(argv: list[str] | None = None) -> DemoSettings:
    d = DemoSettings()
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--trace", type=Path, default=d.trace, help="a timestamp,value CSV")
    parser.add_argument("--day", type=datetime.date.fromisoformat, default=d.day,
                        help="replayed day, YYYY-MM-DD (local to the trace)")
    parser.add_argument("--start-hour", type=float, default=d.start_hour)
    parser.add_argument("--hours", type=float, default=d.hours, help="trace hours replayed")
    parser.add_argument("--utc-offset-hours", type=float, default=d.utc_offset_hours)
    parser.add_argument("--history-days", type=float, default=d.history_days)
    parser.add_argument("--ready-after", type=float, default=d.ready_after,
                        help="wall seconds a new pod takes to become Ready")
    parser.add_argument("--target-per-replica", type=float, default=d.target_per_replica)
    parser.add_argument("--out-dir", type=Path, default=d.out_dir)
    args = parser.parse_args(argv)
    return DemoSettings(
        trace=args.trace, day=args.day, start_hour=args.start_hour, hours=args.hours,
        utc_offset_hours=args.utc_offset_hours, history_days=args.history_days,
        ready_after=args.ready_after, target_per_replica=args.target_per_replica,
        out_dir=args.out_dir)


async def _main(settings: DemoSettings) -> Outcome:
    # SIGTERM (e.g. from a CI runner) cleans up like Ctrl-C does.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await run(settings)


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    settings = parse_args(argv)
    try:
        outcome = asyncio.run(_main(settings))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(f"\ninterrupted; every process the demo started is stopped "
              f"({time.monotonic() - started:.0f}s)", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, TimeoutError) as exc:
        print(f"make demo failed: {exc}", file=sys.stderr)
        return 1
    print(f"\n{outcome.summary}\n")
    print(f"plot: {outcome.plot}   samples: {settings.out_dir / 'demo.csv'}   "
          f"operator log: {settings.out_dir / 'operator.log'}")
    elapsed = time.monotonic() - started
    print(f"the demo took {int(elapsed // 60)}m{elapsed % 60:04.1f}s of wall-clock time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
