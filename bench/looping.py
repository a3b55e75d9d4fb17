"""`python -m foreseer.bench loop`: the closed-loop benchmark over a directory of trace CSVs.

Every policy of `foreseer.simulator` runs on every trace; the JSON holds per-series
scores and the summary ratios of the issue (each a ratio of means over the series,
so a series where both policies score zero divides nothing by zero). A markdown
report and one PNG per series go next to the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from foreseer.operator.durations import format_duration, parse_duration
from foreseer.operator.specs import ForecastSpec
from foreseer.simulator.comparing import Comparison, compare, tick_count
from foreseer.simulator.policies import (
    CRANE_STYLE,
    FORESEER_AUTO,
    FORESEER_REACTIVE,
    HISTORY_STEP,
    HPA,
    PHPA_STYLE,
    simulation_spec,
)
from foreseer.simulator.scenarios import Scenario
from foreseer.simulator.simulating import ORACLE
from foreseer.simulator.traces import TraceError, read_trace

HERE = Path(__file__).resolve().parent
PEERS = (HPA, PHPA_STYLE, CRANE_STYLE)
FIELDS = (
    "underprov_time",
    "unserved_load",
    "replica_hours",
    "replica_hours_vs_oracle",
    "actions",
    "recovery_seconds",
)
TARGETS = {
    "underprov_ratio_vs_hpa": 0.3,
    "replica_hours_ratio_vs_hpa": 1.05,
    "replica_hours_ratio_vs_oracle": 1.25,
    "actions_ratio_vs_hpa": 1.0,
}
DEFAULT_RETRAIN = "auto"
REFIT_POINTS = 288
"""With --retrain auto, refit after a day or this many new history points, whichever is
longer (a day at 5 minutes, six at 30): the fit window is 4032 points, so a refit on a
few more adds little, and in between the model is conditioned on every new point."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--traces", type=Path, default=HERE / "traces", help="directory of CSVs")
    parser.add_argument(
        "--out",
        type=Path,
        default=HERE / "results" / "loop.json",
        help="the JSON; loop.md and the PNGs go next to it",
    )
    parser.add_argument(
        "--series",
        action="append",
        default=[],
        help="only traces whose name contains this (repeatable)",
    )
    parser.add_argument(
        "--retrain",
        default=DEFAULT_RETRAIN,
        help="sim time between forecaster refits, or auto: a day or "
        f"{REFIT_POINTS} history points, whichever is longer; between refits "
        "the model is conditioned on every new point (auto)",
    )
    parser.add_argument(
        "--quantile",
        type=float,
        default=None,
        help="forecast quantile for foreseer (default: the policy default)",
    )
    parser.add_argument(
        "--tradeoff",
        default="",
        help="comma-separated quantiles to sweep foreseer Auto over, e.g. "
        "0.5,0.7,0.9,0.99 (adds a trade-off table to the markdown)",
    )
    parser.add_argument(
        "--tradeoff-series",
        action="append",
        default=[],
        help="sweep only traces whose name contains this (repeatable; default: all)",
    )
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--no-plots", action="store_true", help="skip the PNGs")


@dataclass(frozen=True)
class Job:
    path: Path
    comparison: Comparison
    quantile: float | None
    """foreseer's forecast quantile; None = the default policy's."""
    plot: Path | None


def _policy_for(job: Job, trace_path: Path) -> Comparison:
    if job.quantile is None:
        return job.comparison
    # The default policy with only the quantile changed; the target is set by the scenario.
    from foreseer.simulator.scenarios import resolve

    workload = resolve(read_trace(trace_path), job.comparison.scenario)
    spec = simulation_spec(workload)
    forecast = spec.forecast.model_copy(update={"quantile": job.quantile})
    return replace(job.comparison, policy=spec.model_copy(update={"forecast": forecast}))


def run_one(job: Job) -> tuple[str, float | None, dict[str, dict[str, Any]], float]:
    """Simulate one trace (in a worker): (name, quantile, scores per policy, seconds)."""
    started = time.perf_counter()
    trace = read_trace(job.path)
    comparison = _policy_for(job, job.path)
    if comparison.retrain is None:
        point = max(trace.step, HISTORY_STEP)
        comparison = replace(comparison, retrain=max(86400.0, REFIT_POINTS * point))
    with warnings.catch_warnings():
        # Forecasters warn on all-NaN windows they handle; the report is the scores.
        warnings.simplefilter("ignore", RuntimeWarning)
        result = compare(trace, comparison)
    if job.plot is not None:
        from foreseer.simulator.plotting import plot

        plot(result, job.plot, f"{trace.name}: load, ready capacity per policy", FORESEER_AUTO)
    scores = {label: score.to_dict() for label, score in result.scores.items()}
    return trace.name, job.quantile, scores, time.perf_counter() - started


def _mean(series: Sequence[dict[str, Any]], policy: str, key: str) -> float:
    return statistics.fmean(float(s["policies"][policy][key]) for s in series)


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def summarize(series: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """The issue's summary: foreseer Auto's mean over the series over another policy's mean."""
    if not series:
        return {}
    auto = {key: _mean(series, FORESEER_AUTO, key) for key in FIELDS[:5]}
    best_peer = statistics.fmean(
        min(float(s["policies"][p]["underprov_time"]) for p in PEERS) for s in series
    )
    return {
        "underprov_ratio_vs_hpa": _ratio(
            auto["underprov_time"], _mean(series, HPA, "underprov_time")
        ),
        "replica_hours_ratio_vs_hpa": _ratio(
            auto["replica_hours"], _mean(series, HPA, "replica_hours")
        ),
        "replica_hours_ratio_vs_oracle": _ratio(
            auto["replica_hours"], _mean(series, ORACLE, "replica_hours")
        ),
        "actions_ratio_vs_hpa": _ratio(auto["actions"], _mean(series, HPA, "actions")),
        "underprov_ratio_vs_best_peer": _ratio(auto["underprov_time"], best_peer),
        "underprov_foreseer_median": statistics.median(
            float(s["policies"][FORESEER_AUTO]["underprov_time"]) for s in series
        ),
    }


def _run_jobs(
    jobs: list[Job], workers: int, units: Callable[[Job], int]
) -> list[tuple[str, float | None, dict[str, dict[str, Any]], float]]:
    bar = tqdm(
        total=sum(units(j) for j in jobs),
        unit="tick",
        disable=not sys.stderr.isatty(),
        file=sys.stderr,
    )
    results = []
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(run_one, job): job for job in jobs}
        for future in as_completed(futures):
            name, quantile, scores, seconds = future.result()
            results.append((name, quantile, scores, seconds))
            bar.update(units(futures[future]))
            tag = f" q={quantile}" if quantile is not None else ""
            bar.write(f"{name}{tag}: {seconds:.0f}s", file=sys.stderr)
    bar.close()
    return results


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    paths = sorted(
        p
        for p in Path(args.traces).glob("*.csv")
        if not args.series or any(s in p.stem for s in args.series)
    )
    if not paths:
        print(f"bench loop: no *.csv in {args.traces} (filters: {args.series})", file=sys.stderr)
        return 2
    try:
        retrain = None if args.retrain == "auto" else parse_duration(args.retrain)
        sweep = [float(q) for q in args.tradeoff.split(",") if q.strip()]
        traces = {p: read_trace(p) for p in paths}
    except (ValueError, TraceError) as exc:
        print(f"bench loop: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    comparison = Comparison(Scenario(), None, retrain)
    jobs = [
        Job(
            p,
            comparison,
            args.quantile,
            None if args.no_plots else out.parent / f"loop_{p.stem}.png",
        )
        for p in paths
    ]
    swept_paths = [p for p in paths
                   if not args.tradeoff_series or any(s in p.stem for s in args.tradeoff_series)]
    # The default quantile's row comes from the main jobs; it is not run twice.
    default = args.quantile if args.quantile is not None else ForecastSpec().quantile
    jobs += [Job(p, comparison, q, None) for q in sweep if q != default for p in swept_paths]
    ticks = {p: tick_count(t, comparison.scenario) for p, t in traces.items()}
    results = _run_jobs(jobs, args.workers, lambda j: ticks[j.path])

    main = sorted((r for r in results if r[1] == args.quantile), key=lambda r: r[0])
    series = [
        {
            "name": name,
            "seconds": round(seconds, 1),
            "policies": {
                label: {k: v for k, v in s.items() if k in FIELDS} for label, s in scores.items()
            },
        }
        for name, _, scores, seconds in main
    ]
    tradeoff = []
    swept_names = {p.stem for p in swept_paths}
    for q in sorted({*sweep, default}) if sweep else ():
        picked = [(n, s) for n, qq, s, _ in results
                  if n in swept_names and (qq == q or (q == default and qq == args.quantile))]
        swept = [{"name": n, "policies": s} for n, s in picked]
        tradeoff.append({"quantile": q, "series": sorted(n for n, _ in picked),
                         "summary": summarize(swept)})
    elapsed = time.perf_counter() - started
    document = {
        "settings": {
            "traces": _shown(Path(args.traces)),
            "retrain": args.retrain if retrain is None else format_duration(retrain),
            "quantile": args.quantile,
            "p99_replicas": comparison.scenario.p99_replicas,
            "target_fraction": comparison.scenario.target_fraction,
            "scrape_lag_seconds": comparison.scenario.scrape_lag,
        },
        "series": series,
        "summary": summarize(series),
        "targets": TARGETS,
        "tradeoff": tradeoff,
        "elapsed_seconds": round(elapsed, 1),
    }
    out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    markdown = out.with_suffix(".md")
    markdown.write_text(report(document, jobs), encoding="utf-8")
    print(json.dumps(document["summary"], indent=2))
    print(f"wrote {out} and {markdown} in {elapsed:.0f}s")
    return 0


def _shown(path: Path) -> str:
    """A path relative to the repository when it lies inside it, so results do not name
    the machine they ran on."""
    try:
        return str(path.resolve().relative_to(HERE.parent))
    except ValueError:
        return str(path)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(document: dict[str, Any], jobs: Sequence[Job]) -> str:
    """The markdown next to the JSON: summary against targets, per-series tables, plots."""
    summary = document["summary"]
    lines = [
        "# Closed-loop benchmark (`make bench-loop`)",
        "",
        "Generated by `python -m foreseer.bench loop`; numbers are measured, not edited.",
        f"Settings: {json.dumps(document['settings'])}; elapsed {document['elapsed_seconds']}s.",
        "",
        "Policies: foreseer Auto and Reactive and the HPA v2 run the operator's own `decide()`",
        "(the HPA with the default behavior, forecasts off). PHPA-style and Crane-style are our",
        "implementations of those projects' documented ideas, on top of the same HPA engine.",
        "The oracle knows the future and the startup delay and never under-provisions.",
        "",
        "## Summary (ratios of means over the series)",
        "",
        "| metric | measured | target |",
        "|---|---|---|",
    ]
    for key, value in summary.items():
        target = TARGETS.get(key)
        verdict = (
            ""
            if target is None or value is None
            else (f"<= {target} {'met' if value <= target else 'MISSED'}")
        )
        lines.append(f"| {key} | {_fmt(value, '.3f')} | {verdict} |")
    if document["tradeoff"]:
        lines += [
            "",
            "## Trade-off over foreseer's forecast quantile",
            "",
            f"Swept on: {', '.join(document['tradeoff'][0]['series'])}.",
            "",
            "| quantile | underprov vs HPA | replica-hours vs HPA | vs oracle | actions vs HPA |",
            "|---|---|---|---|---|",
        ]
        for row in document["tradeoff"]:
            s = row["summary"]
            lines.append(
                f"| {row['quantile']} | {_fmt(s.get('underprov_ratio_vs_hpa'), '.3f')} | "
                f"{_fmt(s.get('replica_hours_ratio_vs_hpa'), '.3f')} | "
                f"{_fmt(s.get('replica_hours_ratio_vs_oracle'), '.3f')} | "
                f"{_fmt(s.get('actions_ratio_vs_hpa'), '.3f')} |"
            )
    order = [FORESEER_AUTO, FORESEER_REACTIVE, *PEERS, ORACLE]
    for entry in document["series"]:
        lines += [
            "",
            f"## {entry['name']}",
            "",
            "| policy | under-prov time | unserved load | replica-hours | vs oracle | "
            "actions | recovery |",
            "|---|---|---|---|---|---|---|",
        ]
        for label in order:
            s = entry["policies"].get(label)
            if s is None:
                continue
            lines.append(
                f"| {label} | {s['underprov_time']:.2%} | {s['unserved_load']:.3%} | "
                f"{s['replica_hours']:.0f} | {s['replica_hours_vs_oracle']:.2f} | "
                f"{s['actions']} | {_fmt(s.get('recovery_seconds'), '.0f')}s |"
            )
        plot = next((j.plot for j in jobs if j.path.stem == entry["name"] and j.plot), None)
        if plot is not None:
            lines += ["", f"![{entry['name']}]({plot.name})"]
    return "\n".join(lines) + "\n"
