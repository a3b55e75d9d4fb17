"""`foreseer backtest`: replay a trace or Prometheus history against every policy and compare.

Bad input (an unreadable CSV, timestamps that go back, a policy that fails
validation, an unreachable Prometheus) ends with one clear line and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from foreseer.operator.durations import parse_duration
from foreseer.operator.specs import ScalingPolicySpec
from foreseer.simulator.scenarios import DEFAULT_P99_REPLICAS, DEFAULT_TARGET_FRACTION, Scenario
from foreseer.simulator.traces import Trace, TraceError, read_trace

USAGE_ERROR = 2


class InputError(Exception):
    """Input the user must fix; printed without a traceback."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--trace", metavar="FILE.csv", help="a timestamp,value CSV to replay")
    source.add_argument("--prometheus", metavar="URL",
                        help="replay the policy's own query from this Prometheus' history")
    parser.add_argument("--policy", metavar="policy.yaml",
                        help="a ScalingPolicy (manifest or bare spec); required with --prometheus")
    parser.add_argument("--metric", help="with --prometheus: which of the policy's metrics to "
                        "replay (default: the first)")
    parser.add_argument("--since", default="7d", help="with --prometheus: how far back (7d)")
    parser.add_argument("--startup", help="replica startup delay (default: max(2m, trace step))")
    parser.add_argument("--p99-replicas", type=float, default=None,
                        help="scale the trace so its p99 needs this many replicas at full "
                        f"capacity (default {DEFAULT_P99_REPLICAS:g} for --trace; --prometheus "
                        "keeps real units)")
    parser.add_argument("--target-fraction", type=float, default=DEFAULT_TARGET_FRACTION,
                        help="targetPerReplica as a fraction of a replica's capacity (0.7)")
    parser.add_argument("--scrape-lag", default="30s", help="metric lag (30s)")
    parser.add_argument("--interval", help="decision interval (default: max(30s, trace step))")
    parser.add_argument("--retrain", help="sim time between forecaster refits "
                        "(default: the policy's retrainInterval)")
    parser.add_argument("--plot", metavar="out.png", help="draw load, capacity and forecast band")
    parser.add_argument("--json", metavar="out.json", help="write the scores as JSON")


def _duration(text: str | None, flag: str) -> float | None:
    if text is None:
        return None
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise InputError(f"{flag}: {exc}") from exc
    if seconds <= 0:
        raise InputError(f"{flag}: must be longer than 0s, got {text!r}")
    return seconds


def load_policy(path: str) -> ScalingPolicySpec:
    """A ScalingPolicy manifest or a bare spec from YAML, validated by the API's own models."""
    try:
        data: Any = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read policy {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise InputError(f"policy {path} is not valid YAML: {exc}") from exc
    if isinstance(data, dict) and "spec" in data:
        kind = data.get("kind")
        if kind not in (None, "ScalingPolicy"):
            raise InputError(f"policy {path}: kind is {kind!r}, expected ScalingPolicy")
        data = data["spec"]
    if not isinstance(data, dict):
        raise InputError(f"policy {path}: expected a ScalingPolicy or its spec, a YAML mapping")
    try:
        return ScalingPolicySpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" if e["loc"] else e["msg"]
            for e in exc.errors()
        )
        raise InputError(f"policy {path} is invalid: {problems}") from exc


def _source(args: argparse.Namespace, policy: ScalingPolicySpec | None) -> tuple[Trace, float]:
    """The trace to replay and the capacity of one replica in its units."""
    if args.trace:
        return read_trace(args.trace), 1.0
    if policy is None:
        raise InputError("--prometheus needs --policy: the queries to replay come from it")
    metric = policy.metrics[0]
    if args.metric:
        named = [m for m in policy.metrics if m.name == args.metric]
        if not named:
            raise InputError(f"--metric {args.metric!r}: the policy has "
                             f"{', '.join(m.name for m in policy.metrics)}")
        metric = named[0]
    elif len(policy.metrics) > 1:
        print(f"replaying metric {metric.name!r}; choose another with --metric",
              file=sys.stderr)
    from foreseer.simulator.histories import fetch_trace

    since = _duration(args.since, "--since") or 0.0
    now = time.time()
    step = parse_duration(policy.forecast.step)
    trace = fetch_trace(args.prometheus, metric, now - since, now, step)
    # Real units: the policy's target is the given fraction of what one replica serves.
    return trace, metric.target_per_replica / args.target_fraction


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except (InputError, TraceError) as exc:
        print(f"foreseer backtest: {exc}", file=sys.stderr)
        return USAGE_ERROR


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from foreseer.simulator.comparing import FORESEER_AUTO, Comparison, compare, table, tick_count

    policy = load_policy(args.policy) if args.policy else None
    trace, capacity = _source(args, policy)
    try:
        scenario = Scenario(
            p99_replicas=args.p99_replicas if args.p99_replicas is not None
            else (DEFAULT_P99_REPLICAS if args.trace else None),
            capacity=capacity,
            target_fraction=args.target_fraction,
            startup=_duration(args.startup, "--startup"),
            scrape_lag=_duration(args.scrape_lag, "--scrape-lag") or 0.0,
            interval=_duration(args.interval, "--interval"),
        )
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    comparison = Comparison(scenario, policy, _duration(args.retrain, "--retrain"))
    started = time.perf_counter()
    with tqdm(total=tick_count(trace, scenario), unit="tick", desc=trace.name, disable=None,
              file=sys.stderr) as bar:
        result = compare(trace, comparison, bar.update)
    print(table(result))
    print(f"\n{len(result.workload.ticks())} decisions in {time.perf_counter() - started:.1f}s; "
          f"startup {result.workload.startup:.0f}s, interval {result.workload.interval:.0f}s, "
          f"scrape lag {result.workload.scrape_lag:.0f}s")
    if args.plot:
        from foreseer.simulator.plotting import plot

        print(f"plot: {plot(result, args.plot, trace.name, FORESEER_AUTO)}")
    if args.json:
        document = {
            "trace": trace.name,
            "workload": {
                "capacity": result.workload.capacity,
                "target_per_replica": result.workload.target_per_replica,
                "startup_seconds": result.workload.startup,
                "interval_seconds": result.workload.interval,
                "scrape_lag_seconds": result.workload.scrape_lag,
            },
            "policies": {label: s.to_dict() for label, s in result.scores.items()},
        }
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"json: {args.json}")
    return 0
