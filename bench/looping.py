"""`python -m foreseer.bench loop`: the closed-loop benchmark over a directory of trace CSVs.

Every policy of `foreseer.simulator` runs on every trace; the JSON holds per-series
scores and the summary ratios of the issue (each a ratio of means over the series,
so a series where both policies score zero divides nothing by zero). The HPA alone is
also run at every target fraction of ``--hpa-fractions``, and foreseer Auto alone at
every quantile of ``--tradeoff``; the `frontier` object places foreseer against the
HPA's curve (see frontiers.py). A markdown report, one PNG of each run and one of each
frontier per series go next to the JSON.
"""

from __future__ import annotations

import argparse
import json
import math
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

from foreseer.bench.frontiers import TARGETS as FRONTIER_TARGETS
from foreseer.bench.frontiers import Setting, frontier_point, summarize_frontier
from foreseer.operator.durations import format_duration, parse_duration
from foreseer.operator.specs import ForecastSpec
from foreseer.simulator.comparing import Comparison, compare, tick_count
from foreseer.simulator.policies import (
    CRANE_STYLE,
    FORESEER_AUTO,
    FORESEER_REACTIVE,
    FORESEER_UTILIZATION,
    HPA,
    HPA_UTILIZATION,
    PHPA_STYLE,
    simulation_spec,
)
from foreseer.simulator.scenarios import Scenario, resolve
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
CAPACITY_DROP = 0.3
"""The release step of the utilisation runs: from mid-trace a replica serves 30 % less."""
AFTER_STEP_SECONDS = 3600.0
"""The window after the step in which under-provisioning is compared with the HPA's."""
UTILIZATION_TARGETS = {
    "within_of_known_capacity": 0.05,
    "detection_intervals_at_most": 10,
}
HPA_FRACTIONS = "0.45,0.5,0.55,0.6,0.65,0.7,0.8,0.9"
FORESEER_QUANTILES = "0.5,0.95"
"""Besides the default 0.9: each quantile is one more foreseer run per trace, the
expensive part of the benchmark (an HPA-only run takes about a second)."""
DEFAULT_RETRAIN = "auto"
REFIT_POINTS = 288
"""With --retrain auto, refit after a day or this many new history points, whichever is
longer (six days at 30 minutes), instead of the policy's hourly default: a fit takes a
second or more, and a trace of two months at the default would spend hours on refits
that add an hour to a window of seven days. In between, the model is conditioned on
every new point, and a drifting live error refits at once, as in the operator."""


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
        default=FORESEER_QUANTILES,
        help="comma-separated quantiles to run foreseer Auto alone at, besides its own "
        f"(default {FORESEER_QUANTILES}; '' for none): a trade-off table, and foreseer's "
        "curve in the frontier plots",
    )
    parser.add_argument(
        "--hpa-fractions",
        default=HPA_FRACTIONS,
        help=f"comma-separated target fractions to run the HPA alone at (default "
        f"{HPA_FRACTIONS}): its cost/safety curve in the frontier",
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

    @property
    def sweeps(self) -> str | None:
        """The one policy this job runs for a sweep (foreseer or the HPA); None = all."""
        only = self.comparison.only
        return None if only is None else only[0]


def _policy_for(job: Job, trace_path: Path) -> Comparison:
    if job.quantile is None:
        return job.comparison
    # The default policy with only the quantile changed; the target is set by the scenario.
    workload = resolve(read_trace(trace_path), job.comparison.scenario)
    spec = simulation_spec(workload)
    forecast = spec.forecast.model_copy(update={"quantile": job.quantile})
    return replace(job.comparison, policy=spec.model_copy(update={"forecast": forecast}))


Outcome = tuple[Job, str, dict[str, dict[str, Any]], float]


def run_one(job: Job) -> Outcome:
    """Simulate one trace (in a worker): (job, name, scores per policy, seconds)."""
    started = time.perf_counter()
    trace = read_trace(job.path)
    comparison = _policy_for(job, job.path)
    if comparison.retrain is None:
        workload = resolve(trace, comparison.scenario)
        point = parse_duration(simulation_spec(workload).forecast.step)
        comparison = replace(comparison, retrain=max(86400.0, REFIT_POINTS * point))
    with warnings.catch_warnings():
        # Forecasters warn on all-NaN windows they handle; the report is the scores.
        warnings.simplefilter("ignore", RuntimeWarning)
        result = compare(trace, comparison)
    if job.plot is not None:
        from foreseer.simulator.plotting import plot

        plot(result, job.plot, f"{trace.name}: load, ready capacity per policy", FORESEER_AUTO)
    scores: dict[str, dict[str, Any]] = {
        label: score.to_dict() for label, score in result.scores.items()}
    workload = result.workload
    for label, drifts in result.drifts.items():
        after = [t for t in drifts if t >= workload.drop_at]
        scores[label]["drifts_before_step"] = len(drifts) - len(after)
        scores[label]["detection_intervals"] = (
            math.ceil((after[0] - workload.drop_at) / workload.interval - 1e-9) if after else None)
    if math.isfinite(workload.drop_at):
        for label in result.scores:
            scores[label]["underprov_hour_after_step"] = result.underprov_time(
                label, workload.drop_at, workload.drop_at + AFTER_STEP_SECONDS)
    return job, trace.name, scores, time.perf_counter() - started


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


def series_of(main: Sequence[Outcome]) -> list[dict[str, Any]]:
    """The per-series entries of the main runs (every standard policy at the defaults)."""
    return [
        {
            "name": name,
            "seconds": round(seconds, 1),
            "policies": {
                label: {k: v for k, v in s.items() if k in FIELDS} for label, s in scores.items()
            },
        }
        for _, name, scores, seconds in main
    ]


def utilization_comparisons(comparison: Comparison) -> tuple[Comparison, Comparison]:
    """Issue 18's runs: (a) foreseer given only a utilisation target, on the standard
    scenario; (b) it and the HPA on the same utilisation target, with CAPACITY_DROP."""
    learned = replace(comparison, only=(FORESEER_UTILIZATION,))
    dropped = replace(comparison, scenario=replace(comparison.scenario,
                                                   capacity_drop=CAPACITY_DROP),
                      only=(FORESEER_UTILIZATION, HPA_UTILIZATION))
    return learned, dropped


def _within(learned: float, known: float, tolerance: float) -> bool:
    return abs(learned - known) <= tolerance * known if known > 0 else learned <= 0


def _median(values: Sequence[float | None]) -> float | None:
    """The median, a missing value counting as worse than any (None when that is the median)."""
    if not values:
        return None
    value = statistics.median(math.inf if v is None else v for v in values)
    return value if math.isfinite(value) else None


def build_utilization(series: Sequence[dict[str, Any]], learned: dict[str, dict[str, Any]],
                      dropped: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The `utilization` object: per series, (a) foreseer learning the capacity from a
    utilisation target against foreseer Auto given the true targetPerReplica, on both
    figures; (b) after CAPACITY_DROP, how soon the drift was detected and the
    under-provisioning in the hour after the step against the HPA on utilisation."""
    tolerance = UTILIZATION_TARGETS["within_of_known_capacity"]
    bound = UTILIZATION_TARGETS["detection_intervals_at_most"]
    entries = []
    for entry in series:
        name = entry["name"]
        known = entry["policies"][FORESEER_AUTO]
        own = learned[name][FORESEER_UTILIZATION]
        after = dropped[name][FORESEER_UTILIZATION]
        hpa = dropped[name][HPA_UTILIZATION]
        detection = after["detection_intervals"]
        entries.append({
            "name": name,
            "known_capacity": {k: known[k] for k in ("underprov_time", "replica_hours")},
            "learned_capacity": {
                **{k: own[k] for k in ("underprov_time", "replica_hours")},
                "false_drifts": own["drifts_before_step"]},
            # One-sided: less under-provisioning than the known capacity's is no miss.
            "underprov_within": own["underprov_time"]
            <= known["underprov_time"] * (1 + tolerance),
            "replica_hours_ratio": _ratio(own["replica_hours"], known["replica_hours"]),
            "replica_hours_within": _within(own["replica_hours"], known["replica_hours"],
                                            tolerance),
            "drop": {
                "detection_intervals": detection,
                "drifts_before_step": after["drifts_before_step"],
                "detected_in_bound": detection is not None and detection <= bound,
                "underprov_hour_after_step": {
                    "foreseer": after["underprov_hour_after_step"],
                    "hpa": hpa["underprov_hour_after_step"]},
                "underprov_time": {"foreseer": after["underprov_time"],
                                   "hpa": hpa["underprov_time"]},
                "replica_hours": {"foreseer": after["replica_hours"],
                                  "hpa": hpa["replica_hours"]},
                # Less than the HPA, or none where the HPA has none either.
                "less_than_hpa_after_step": after["underprov_hour_after_step"]
                < hpa["underprov_hour_after_step"]
                or after["underprov_hour_after_step"] == hpa["underprov_hour_after_step"] == 0,
            },
        })
    drops = [e["drop"] for e in entries]
    summary = {
        "series": len(entries),
        "series_underprov_within": sum(e["underprov_within"] for e in entries),
        "series_replica_hours_within": sum(e["replica_hours_within"] for e in entries),
        "median_replica_hours_ratio": _median([e["replica_hours_ratio"] for e in entries]),
        "median_underprov_learned": _median(
            [e["learned_capacity"]["underprov_time"] for e in entries]),
        "median_underprov_known": _median(
            [e["known_capacity"]["underprov_time"] for e in entries]),
        "median_detection_intervals": _median([d["detection_intervals"] for d in drops]),
        "worst_detection_intervals": None if any(d["detection_intervals"] is None
                                                 for d in drops)
        else max((d["detection_intervals"] for d in drops), default=None),
        "series_detected_in_bound": sum(d["detected_in_bound"] for d in drops),
        "median_underprov_hour_after_step_foreseer": _median(
            [d["underprov_hour_after_step"]["foreseer"] for d in drops]),
        "median_underprov_hour_after_step_hpa": _median(
            [d["underprov_hour_after_step"]["hpa"] for d in drops]),
        "series_less_than_hpa_after_step": sum(d["less_than_hpa_after_step"] for d in drops),
        "false_drifts": sum(e["learned_capacity"]["false_drifts"] + e["drop"]["drifts_before_step"]
                            for e in entries),
    }
    return {"drop": CAPACITY_DROP, "after_step_seconds": AFTER_STEP_SECONDS,
            "targets": UTILIZATION_TARGETS, "series": entries, "summary": summary}


def _run_jobs(jobs: list[Job], workers: int, units: Callable[[Job], int]) -> list[Outcome]:
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
            job, name, scores, seconds = future.result()
            results.append((job, name, scores, seconds))
            bar.update(units(job))
            tag = f" q={job.quantile}" if job.quantile is not None else ""
            if job.sweeps == HPA:
                tag = f" HPA at {job.comparison.scenario.target_fraction}"
            bar.write(f"{name}{tag}: {seconds:.0f}s", file=sys.stderr)
    bar.close()
    return results


def _setting(knob: float, score: dict[str, Any]) -> Setting:
    return Setting(knob, float(score["replica_hours"]), float(score["underprov_time"]))


def build_frontier(series: Sequence[dict[str, Any]], curves: dict[str, list[Setting]],
                   quantiles: dict[str, dict[float, dict[str, Any]]], default: float
                   ) -> dict[str, Any]:
    """The `frontier` object: per series, foreseer Auto at ``default`` (and at every swept
    quantile) against the HPA curve of ``curves``, and the summary against its targets."""
    points = {}
    entries = []
    for entry in series:
        name = entry["name"]
        curve = sorted(curves[name], key=lambda s: s.knob)
        own = _setting(default, entry["policies"][FORESEER_AUTO])
        points[name] = frontier_point(curve, own.replica_hours, own.underprov_time)
        sweep = []
        for q, score in sorted(quantiles[name].items()):
            at = _setting(q, score)
            point = frontier_point(curve, at.replica_hours, at.underprov_time)
            sweep.append({**at.to_dict("quantile"), **{
                k: point[k] for k in ("underprov_ratio_at_equal_cost", "underprov_ratio_is",
                                      "replica_hours_saved_at_equal_underprov",
                                      "replica_hours_saved_is")}})
        entries.append({"name": name, "foreseer": own.to_dict("quantile"), **points[name],
                        "hpa_curve": [s.to_dict("target_fraction") for s in curve],
                        "foreseer_quantiles": sweep})
    return {"series": entries, "summary": summarize_frontier(points)}


def _knobbed(rows: list[dict[str, float]], knob: str) -> list[tuple[float, float, float]]:
    return [(r[knob], r["replica_hours"], r["underprov_time"]) for r in rows]


def _plot_frontiers(frontier: dict[str, Any], folder: Path) -> None:
    from foreseer.simulator.plotting import plot_frontier

    for entry in frontier["series"]:
        plot_frontier(folder / f"frontier_{entry['name']}.png",
                      f"{entry['name']}: replica-hours against under-provisioned time",
                      _knobbed(entry["hpa_curve"], "target_fraction"),
                      _knobbed(entry["foreseer_quantiles"], "quantile"),
                      entry["foreseer"]["quantile"])


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
        fractions = sorted({float(f) for f in args.hpa_fractions.split(",") if f.strip()})
        traces = {p: read_trace(p) for p in paths}
        comparison = Comparison(Scenario(), None, retrain)
        hpa_sweep = [replace(comparison, scenario=Scenario(target_fraction=f), only=(HPA,))
                     for f in fractions]
    except (ValueError, TraceError) as exc:
        print(f"bench loop: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
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
    alone = replace(comparison, only=(FORESEER_AUTO,))
    jobs += [Job(p, alone, q, None) for q in sweep if q != default for p in swept_paths]
    jobs += [Job(p, c, None, None) for c in hpa_sweep for p in paths]
    learned, dropped = utilization_comparisons(comparison)
    jobs += [Job(p, c, None, None) for c in (learned, dropped) for p in paths]
    ticks = {p: tick_count(t, comparison.scenario) for p, t in traces.items()}
    # Longest first, so that no long foreseer run starts last and leaves a core idle.
    jobs.sort(key=lambda j: (j.sweeps == HPA, -ticks[j.path]))
    results = _run_jobs(jobs, args.workers, lambda j: ticks[j.path])

    main = sorted((r for r in results if r[0].sweeps is None), key=lambda r: r[1])
    utilization = build_utilization(
        series_of(main), {name: scores for job, name, scores, _ in results
                          if job.comparison == learned},
        {name: scores for job, name, scores, _ in results if job.comparison == dropped})
    series = series_of(main)
    # foreseer alone at another quantile, with the other policies of the main run (they
    # do not depend on foreseer's quantile).
    quantiles: dict[str, dict[float, dict[str, Any]]] = {
        entry["name"]: {default: entry["policies"][FORESEER_AUTO]} for entry in series}
    for job, name, scores, _ in results:
        if job.sweeps == FORESEER_AUTO and job.quantile is not None:
            quantiles[name][job.quantile] = scores[FORESEER_AUTO]
    tradeoff = []
    swept_names = {p.stem for p in swept_paths}
    for q in sorted({*sweep, default}) if sweep else ():
        swept = [{"name": e["name"], "policies": {**e["policies"],
                                                 FORESEER_AUTO: quantiles[e["name"]][q]}}
                 for e in series if e["name"] in swept_names]
        tradeoff.append({"quantile": q, "series": [e["name"] for e in swept],
                         "summary": summarize(swept)})
    curves: dict[str, list[Setting]] = {e["name"]: [] for e in series}
    for job, name, scores, _ in results:
        if job.sweeps == HPA:
            curves[name].append(_setting(job.comparison.scenario.target_fraction, scores[HPA]))
    frontier = build_frontier(series, curves, quantiles, default)
    if not args.no_plots:
        _plot_frontiers(frontier, out.parent)
    elapsed = time.perf_counter() - started
    document = {
        "settings": {
            "traces": _shown(Path(args.traces)),
            "retrain": args.retrain if retrain is None else format_duration(retrain),
            "quantile": args.quantile,
            "p99_replicas": comparison.scenario.p99_replicas,
            "target_fraction": comparison.scenario.target_fraction,
            "scrape_lag_seconds": comparison.scenario.scrape_lag,
            "hpa_target_fractions": fractions,
            "foreseer_quantiles": sorted({*sweep, default}),
        },
        "series": series,
        "summary": summarize(series),
        "targets": TARGETS,
        "tradeoff": tradeoff,
        "frontier": frontier,
        "utilization": utilization,
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


def _bounded(value: float | None, bound: str | None, spec: str) -> str:
    mark = {"at_least": ">= ", "at_most": "<= "}.get(bound or "", "")
    return "-" if value is None else f"{mark}{value:{spec}}"


def _frontier_report(frontier: dict[str, Any]) -> list[str]:
    """The frontier's summary against its targets and its per-series table."""
    summary = frontier["summary"]
    lines = [
        "",
        "## foreseer against the HPA's frontier",
        "",
        "The HPA alone at each swept target fraction gives a curve of replica-hours against",
        "under-provisioned time, joined in fraction order and read through its lower envelope",
        "(bench/frontiers.py). foreseer Auto (default quantile) is compared at equal spend",
        "(its under-provisioned time over the curve's) and at equal under-provisioned time",
        "(1 - its replica-hours over the curve's). `>=`/`<=` mark bounds: foreseer's point lies",
        "outside the swept range and the curve's end stands in; nothing is extrapolated.",
        "",
        "| metric | measured | target | |",
        "|---|---|---|---|",
    ]
    for key in FRONTIER_TARGETS:
        row = summary[key]
        where = f" ({row['series']})" if row.get("series") else ""
        lines.append(f"| {key} | {_fmt(row['value'], '.3f')}{where} | {row['target']} | "
                     f"{'met' if row['met'] else 'MISSED'} |")
    lines += [
        "",
        f"Ratios over {len(summary['ratio_series'])} series; a bound in: "
        f"{', '.join(summary['series_with_bounds']) or 'none'}.",
        "",
        "| series | compares | foreseer replica-hours | foreseer under-prov | "
        "HPA under-prov at equal cost | ratio | HPA replica-hours at equal under-prov | "
        "saved | dominated by HPA at |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in frontier["series"]:
        saved = _bounded(e["replica_hours_saved_at_equal_underprov"],
                         e["replica_hours_saved_is"], ".3f")
        lines.append(
            f"| {e['name']} | {e['compares']} | {e['foreseer']['replica_hours']:.0f} | "
            f"{e['foreseer']['underprov_time']:.2%} | "
            f"{_fmt(e['hpa_underprov_at_equal_cost'], '.2%')} | "
            f"{_bounded(e['underprov_ratio_at_equal_cost'], e['underprov_ratio_is'], '.2f')} | "
            f"{e['hpa_replica_hours_at_equal_underprov']:.0f} | "
            f"{saved} | "
            f"{', '.join(f'{f:g}' for f in e['dominated_by_hpa_fractions']) or '-'} |")
    notes = [f"- {e['name']}: {'; '.join(e['notes'])}" for e in frontier["series"] if e["notes"]]
    return lines + (["", *notes] if notes else [])


def _utilization_report(utilization: dict[str, Any]) -> list[str]:
    """Issue 18's section: a capacity learned from a utilisation target, and a release step."""
    s = utilization["summary"]
    n = s["series"]
    lines = [
        "",
        "## Sizing from a utilisation target (learned capacity)",
        "",
        "(a) foreseer Auto given only a utilisation target (the scenario's target fraction)",
        "learns the capacity (operator/capacities.py) and is compared with foreseer Auto",
        "given the true targetPerReplica. (b) From mid-trace a replica serves "
        f"{utilization['drop']:.0%} less;",
        "foreseer (learning) and the HPA on the same utilisation target run through the step.",
        "",
        "| figure | measured | target |",
        "|---|---|---|",
        f"| series with under-prov time within 5 % of (or below) the known capacity's | "
        f"{s['series_underprov_within']}/{n} | {n}/{n} |",
        f"| series with replica-hours within 5 % | {s['series_replica_hours_within']}/{n} | "
        f"{n}/{n} |",
        f"| median replica-hours ratio (learned / known) | "
        f"{_fmt(s['median_replica_hours_ratio'], '.3f')} | 0.95-1.05 |",
        f"| median under-prov time, learned / known | "
        f"{_fmt(s['median_underprov_learned'], '.2%')} / "
        f"{_fmt(s['median_underprov_known'], '.2%')} | |",
        f"| series with the drift detected within "
        f"{utilization['targets']['detection_intervals_at_most']} intervals | "
        f"{s['series_detected_in_bound']}/{n} | {n}/{n} |",
        f"| median / worst intervals to detection | "
        f"{_fmt(s['median_detection_intervals'], '.0f')} / "
        f"{_fmt(s['worst_detection_intervals'], '.0f')} | <= 10 |",
        f"| median under-prov in the hour after the step, foreseer / HPA | "
        f"{_fmt(s['median_underprov_hour_after_step_foreseer'], '.2%')} / "
        f"{_fmt(s['median_underprov_hour_after_step_hpa'], '.2%')} | foreseer less |",
        f"| series where foreseer is less under-provisioned after the step (or both 0) | "
        f"{s['series_less_than_hpa_after_step']}/{n} | {n}/{n} |",
        f"| drifts detected with no capacity change (false alarms) | {s['false_drifts']} | 0 |",
        "",
        "| series | under-prov known / learned | replica-hours known / learned | detection "
        "(intervals) | hour after step foreseer / HPA | whole run foreseer / HPA |",
        "|---|---|---|---|---|---|",
    ]
    for e in utilization["series"]:
        d = e["drop"]
        lines.append(
            f"| {e['name']} | {e['known_capacity']['underprov_time']:.2%} / "
            f"{e['learned_capacity']['underprov_time']:.2%} | "
            f"{e['known_capacity']['replica_hours']:.0f} / "
            f"{e['learned_capacity']['replica_hours']:.0f} | "
            f"{_fmt(d['detection_intervals'], 'd')} | "
            f"{_fmt(d['underprov_hour_after_step']['foreseer'], '.2%')} / "
            f"{_fmt(d['underprov_hour_after_step']['hpa'], '.2%')} | "
            f"{d['underprov_time']['foreseer']:.2%} / {d['underprov_time']['hpa']:.2%} |")
    return lines


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
    lines += _frontier_report(document["frontier"])
    lines += _utilization_report(document["utilization"])
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
            lines += ["", f"![{entry['name']}]({plot.name})",
                      "", f"![{entry['name']} frontier](frontier_{entry['name']}.png)"]
    return "\n".join(lines) + "\n"
