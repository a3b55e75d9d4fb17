"""The forecast benchmark: every model, the operator's fit and three anchors on trace CSVs.

For each ``timestamp,value`` CSV (series finer than 5 minutes summed to 5
minutes), forecasts are made from rolling origins over the last 20% of the
series, each from the history before it only, and scored at horizons of one
step, 15 and 60 minutes at quantile 0.9. MASE and pinball loss are scaled by
the in-sample seasonal-naive MAE of the first 80% (daily season, or lag 1).

``auto`` is the operator's own fit (`recipe_forecaster`) for a policy at the CRD's
forecast defaults (every model, quantile 0.9, 7 days of history), at the series' step,
backtested and calibrated at the horizon it is scored at. Every model is refitted every
``--refit-every`` origins and moved forward with ``update`` in between, as the operator
retrains on an interval and re-conditions on each tick; ``auto`` re-runs its selection
at each refit. The anchors' q0.9 is their point forecast plus the empirical q0.9 of
their own residuals at that horizon from origins whose outcome was already
known (warm-up origins before the test region seed it).

The fit time is the wall time of one ``auto`` fit (60-minute recipe) on each series;
the predict time is the CPU time of the calling thread per ``predict`` (the
longest horizon, quantiles 0.5 and 0.9), so that other processes sharing the
machine do not count as ours.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from foreseer.bench.anchors import ANCHORS, daily_period
from foreseer.operator.durations import parse_duration
from foreseer.operator.forecasting import Recipe, backtest_steps, recipe_for, recipe_forecaster
from foreseer.operator.specs import ForecastSpec
from foreseer.predictors.backtesting import Backtest, BacktestSettings, Factory, backtest
from foreseer.predictors.forecasts import Forecaster
from foreseer.predictors.histories import checked_values
from foreseer.predictors.models import MODELS
from foreseer.predictors.scores import coverage, mae, naive_mae, pinball_loss, smape
from foreseer.predictors.series import FloatArray, Series

HERE = Path(__file__).resolve().parent
Q = 0.9
FINEST_STEP = 300.0
HORIZONS: dict[str, float] = {"1step": 0.0, "15min": 900.0, "60min": 3600.0}
"""Horizon label -> lead time in seconds (0: one step), converted to at least one step."""
AUTO = "auto"
WARMUP_ORIGINS = 48
"""Extra anchor origins before the test region, so their q0.9 starts with residuals."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--traces", type=Path, default=HERE / "traces", help="directory of CSVs")
    parser.add_argument(
        "--out",
        type=Path,
        default=HERE / "results" / "forecast.json",
        help="JSON results; the markdown table goes next to it with a .md suffix",
    )
    parser.add_argument("--origins", type=int, default=144, help="most origins per series")
    parser.add_argument("--refit-every", type=int, default=36, help="origins between refits")
    parser.add_argument(
        "--series", action="append", default=[], help="only CSVs whose name contains this"
    )
    parser.add_argument(
        "--models", nargs="*", default=None, help=f"subset of {sorted(MODELS)} (default: all)"
    )
    parser.add_argument(
        "--history", default=ForecastSpec().history,
        help="auto's forecast.history (default: the CRD's, %(default)s)")


def run(args: argparse.Namespace) -> int:
    paths = sorted(p for p in Path(args.traces).glob("*.csv") if _chosen(p, args.series))
    if not paths:
        print(f"no *.csv in {args.traces} (filters: {args.series})", file=sys.stderr)
        return 2
    models = _models(args.models)
    if args.origins < 2 or args.refit_every < 1:
        print("--origins must be at least 2 and --refit-every at least 1", file=sys.stderr)
        return 2
    per_series = len(models) + 1 + len(ANCHORS)
    bar = tqdm(total=len(paths) * per_series, disable=not sys.stderr.isatty(), unit="model")
    results, fits, predicts = [], [], []
    skipped: list[dict[str, str]] = []
    for path in paths:
        bar.set_description(path.stem[:30])
        before = bar.n
        try:
            series = load_trace(path)
            checked_values(series)  # before any work, with the predictors' own message
            entry, fit_s, predict_ms = evaluate(path.stem, series, models, args, bar.update)
        except ValueError as exc:
            # The benchmark must run through any directory of CSVs: a trace it cannot use
            # (too short, negative, all missing) is reported and skipped, never a traceback.
            print(f"skipping {path.name}: {exc}", file=sys.stderr)
            skipped.append({"name": path.stem, "reason": str(exc)})
            bar.update(per_series - (bar.n - before))
            continue
        results.append(entry)
        fits.append(fit_s)
        predicts.extend(predict_ms)
    bar.close()
    if not results:
        print(f"no usable trace in {args.traces}: every CSV was skipped", file=sys.stderr)
        return 2
    summary = summarise(results, fits, predicts)
    report = {"series": results, "skipped": skipped, "summary": summary}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(json.dumps(report["summary"], indent=2))
    return 0


def _chosen(path: Path, filters: list[str]) -> bool:
    return not filters or any(f in path.name for f in filters)


def _models(names: list[str] | None) -> dict[str, Factory]:
    if names is None:
        return dict(MODELS)
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; known: {sorted(MODELS)}")
    return {n: MODELS[n] for n in names}


def load_trace(path: Path, finest: float = FINEST_STEP) -> Series:
    """A ``timestamp,value`` CSV (ISO-8601 or unix seconds), summed to a grid of at least
    ``finest`` seconds."""
    import pandas as pd

    frame = pd.read_csv(path)
    if list(frame.columns[:2]) != ["timestamp", "value"]:
        raise ValueError(f"header must be timestamp,value, got {list(frame.columns)}")
    stamps = frame["timestamp"]
    if pd.api.types.is_numeric_dtype(stamps):
        seconds = stamps.to_numpy(dtype=np.float64)
    else:
        epoch = pd.Timestamp(0, tz="UTC")
        seconds = (pd.to_datetime(stamps, utc=True) - epoch).dt.total_seconds().to_numpy()
    values = pd.to_numeric(frame["value"], errors="coerce").to_numpy(dtype=np.float64)
    series = Series.from_pairs(seconds, values)
    if series.step < finest:
        series = series.resample(series.step * max(1, round(finest / series.step)), "sum")
    return series


def horizon_steps(step: float) -> dict[str, int]:
    return {label: max(1, round(seconds / step)) for label, seconds in HORIZONS.items()}


@dataclass(frozen=True)
class Plan:
    """Where the test origins go on one series."""

    split: int
    horizons: dict[str, int]
    settings: BacktestSettings

    @classmethod
    def of(cls, series: Series, origins: int, refit_every: int) -> Plan:
        n = len(series)
        split = int(0.8 * n)
        horizons = horizon_steps(series.step)
        longest = max(horizons.values())
        usable = n - longest - split + 1
        if usable < 2:
            raise ValueError(f"{n} points leave no test origins")
        stride = max(1, math.ceil(usable / origins))
        settings = BacktestSettings(
            horizon=longest,
            origins=(usable - 1) // stride + 1,
            stride=stride,
            min_history=min(24, split),
            refit_every=refit_every,
        )
        return cls(split, horizons, settings)


def evaluate(
    name: str,
    series: Series,
    models: dict[str, Factory],
    args: argparse.Namespace,
    advance: Callable[[int], Any],
) -> tuple[dict[str, Any], float, list[float]]:
    """One series: scores per model and horizon, the Auto fit time and predict times."""
    plan = Plan.of(series, args.origins, args.refit_every)
    scale = _scale(series.values[: plan.split], series.step)
    scored: dict[str, dict[str, dict[str, float]]] = {}
    longest = max(plan.horizons.values())
    for model_name, factory in models.items():
        result = backtest(factory, series, plan.settings, (Q,))
        scored[model_name] = _scores(result, result.quantile(Q), plan, scale)
        advance(1)
    # The operator calibrates for the one horizon it serves: each horizon's row of AUTO
    # comes from the recipe of a policy forecasting that far ahead.
    recipes = {label: default_recipe(series.step, h * series.step, models,
                                     parse_duration(args.history))
               for label, h in plan.horizons.items()}
    by_horizon = {}
    for label, recipe in recipes.items():
        result = backtest(functools.partial(recipe_forecaster, recipe), series, plan.settings,
                          (Q,))
        by_horizon[label] = _scores(result, result.quantile(Q), plan, scale)
    scored[AUTO] = {metric: {label: by_horizon[label][metric][label] for label in recipes}
                    for metric in by_horizon[next(iter(recipes))]}
    advance(1)
    warm = dataclasses.replace(plan.settings, origins=plan.settings.origins + WARMUP_ORIGINS)
    for model_name, anchor in ANCHORS.items():
        result = backtest(anchor, series, warm, ())
        test = result.origins >= plan.split
        upper = _anchor_upper(result)[test]
        scored[model_name] = _scores(result.subset(test), upper, plan, scale)
        advance(1)
    farthest = max(recipes, key=lambda label: plan.horizons[label])
    auto = functools.partial(recipe_forecaster, recipes[farthest])
    fitted, fit_seconds = _timed_fit(auto, series)
    entry = {
        "name": name,
        "step_seconds": series.step,
        "models": scored,
        "selected": getattr(fitted, "selected_", None),
    }
    return entry, fit_seconds, _predict_ms(fitted, longest)


def default_recipe(step: float, horizon: float, models: dict[str, Factory],
                   history: float | None = None) -> Recipe:
    """The operator's fit for a policy at the CRD's forecast defaults forecasting
    ``horizon`` seconds ahead, at the series' ``step`` (the traces come at 5 minutes; the
    default step is 1 minute), choosing among ``models``, on ``history`` seconds (default:
    the CRD's)."""
    recipe = recipe_for(ForecastSpec(), horizon)
    names = None if set(models) == set(MODELS) else tuple(models)
    return dataclasses.replace(recipe, models=names, step=step,
                               horizon=backtest_steps(horizon, step),
                               history=recipe.history if history is None else history)


def _scale(train: FloatArray, step: float) -> float:
    period = daily_period(step, int(np.count_nonzero(~np.isnan(train))))
    scale = naive_mae(train, period or 1)
    if not np.isfinite(scale) or scale <= 0:
        scale = naive_mae(train, 1)
    return scale if np.isfinite(scale) and scale > 0 else 1.0


def _anchor_upper(result: Backtest) -> FloatArray:
    """Point + q0.9 of the residuals at that lead from origins already resolved."""
    residuals = result.residuals()
    upper = np.full_like(result.mean, np.nan)
    for j in range(result.horizon):
        resolved_at = result.origins + j + 1
        for k, origin in enumerate(result.origins):
            past = residuals[resolved_at <= origin, j]
            past = past[np.isfinite(past)]
            if past.size:
                upper[k, j] = result.mean[k, j] + np.quantile(past, Q)
    return upper


def _scores(
    result: Backtest, upper: FloatArray, plan: Plan, scale: float
) -> dict[str, dict[str, float]]:
    metrics: dict[str, dict[str, float]] = {
        "mase": {},
        "smape": {},
        "pinball_q90": {},
        "coverage_q90": {},
    }
    for label, h in plan.horizons.items():
        actual, mean, q90 = result.actual[:, h - 1], result.mean[:, h - 1], upper[:, h - 1]
        metrics["mase"][label] = _num(mae(actual, mean) / scale)
        metrics["smape"][label] = _num(smape(actual, mean))
        metrics["pinball_q90"][label] = _num(pinball_loss(actual, q90, Q) / scale)
        metrics["coverage_q90"][label] = _num(coverage(actual, q90))
    return metrics


def _num(value: Any) -> float:
    return round(float(value), 6)


def _timed_fit(factory: Callable[[], Forecaster], series: Series) -> tuple[Forecaster, float]:
    started = time.perf_counter()
    fitted = factory().fit(series)
    return fitted, time.perf_counter() - started


def _predict_ms(model: Forecaster, horizon: int, calls: int = 200) -> list[float]:
    """CPU milliseconds per predict: this thread's time, so that other processes on a
    shared machine (which preempt us for whole scheduler slices) do not count as ours."""
    times = []
    for _ in range(calls):
        started = time.thread_time()
        model.predict(horizon, (0.5, Q))
        times.append((time.thread_time() - started) * 1000.0)
    return times


def summarise(
    results: list[dict[str, Any]], fits: list[float], predicts: list[float]
) -> dict[str, Any]:
    def median_ratio(metric: str, against: Iterable[str]) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        names = list(against)
        for label in HORIZONS:
            ratios = []
            for entry in results:
                models = entry["models"]
                best = min(models[a][metric][label] for a in names)
                auto = models[AUTO][metric][label]
                if best > 0 and np.isfinite(best) and np.isfinite(auto):
                    ratios.append(auto / best)
            out[label] = _num(statistics.median(ratios)) if ratios else None
        return out

    coverage_errors = [
        abs(entry["models"][AUTO]["coverage_q90"][label] - Q)
        for entry in results
        for label in HORIZONS
        if np.isfinite(entry["models"][AUTO]["coverage_q90"][label])
    ]
    return {
        "median_mase_ratio_auto_vs_best_anchor": median_ratio("mase", ANCHORS),
        "median_pinball_ratio_auto_vs_best_anchor": median_ratio("pinball_q90", ANCHORS),
        "median_mase_ratio_auto_vs_seasonal_naive": median_ratio("mase", ["anchor_seasonal_naive"]),
        "mean_abs_coverage_error_q90": _num(np.mean(coverage_errors)) if coverage_errors else None,
        "fit_seconds_p50": _num(np.median(fits)) if fits else None,
        "fit_seconds_max": _num(np.max(fits)) if fits else None,
        "predict_ms_p99": _num(np.percentile(predicts, 99)) if predicts else None,
    }


def markdown(report: dict[str, Any]) -> str:
    """The summary, then one table per series: each model's metrics per horizon."""
    paragraphs = (__doc__ or "").strip().split("\n\n")[1:]
    method = [" ".join(line.strip() for line in p.splitlines()) for p in paragraphs]
    lines = ["# Forecast benchmark", "", *"\n\n".join(method).splitlines(), "", "## Summary", ""]
    lines += ["| metric | value |", "|---|---|"]
    for key, value in report["summary"].items():
        lines.append(f"| {key} | {_cell(value)} |")
    for entry in report["series"]:
        lines += [
            "",
            f"## {entry['name']} (step {entry['step_seconds']:g}s, selected: {entry['selected']})",
            "",
            "| model | "
            + " | ".join(f"{m} {h}" for m in ("MASE", "pinball", "coverage") for h in HORIZONS)
            + " |",
            "|---|" + "---|" * (3 * len(HORIZONS)),
        ]
        for model, metrics in entry["models"].items():
            cells = [
                f"{metrics[m][h]:.3f}"
                for m in ("mase", "pinball_q90", "coverage_q90")
                for h in HORIZONS
            ]
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
    if report["skipped"]:
        lines += ["", "## Skipped", ""]
        lines += [f"- {entry['name']}: {entry['reason']}" for entry in report["skipped"]]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_cell(v)}" for k, v in value.items())
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)
