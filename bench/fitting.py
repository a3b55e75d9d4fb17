"""`python -m foreseer.bench fit`: the operator's own fit at the policy defaults, timed and scored.

Every number here comes from `foreseer.operator.fitting.fit_forecaster`, the function the
operator's fitting pool runs, with the recipe the handler builds for a policy of the CRD
defaults (every model, quantile 0.9, ``history: 7d``) and a 15-minute horizon:

- ``timing``: wall seconds of one fit, p50 and p90 over ``--repeats`` fits (after one
  untimed: a pool worker imports scikit-learn once), at 7 days of
  1-minute steps (10,080 points, the CRD default) and 14 days of 5-minute steps;
- ``accuracy``: the mean absolute error of the fit's point forecast 15 minutes ahead,
  against seasonal naive (the value one day before the target), from ``--origins``
  origins two hours apart at the end of each series, each fitted on the 7 days before it.
  The series are a synthetic daily and weekly sine with noise (fixed seed) and the two
  1-minute NASA traces of bench/traces, each at 1 minute and summed to 5 minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from foreseer.bench.forecasting import load_trace
from foreseer.operator.fitting import fit_forecaster
from foreseer.operator.forecasting import Recipe, backtest_steps
from foreseer.predictors.periods import DAY, HOUR, WEEK
from foreseer.predictors.series import Series

HERE = Path(__file__).resolve().parent
HISTORY = 7 * DAY
"""The CRD's default ``forecast.history``."""
AHEAD = 900.0
"""The horizon scored: a 15-minute start-up."""
QUANTILE = 0.9
SPACING = 2 * HOUR
"""Between accuracy origins: far enough apart that they see different times of day."""
TRACES = ("nasa__http_requests_jul95.csv", "nasa__http_requests_aug95.csv")
"""The real traces scored, both at 1-minute steps in bench/traces."""
START = 1_700_006_400.0  # a midnight UTC


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--traces", type=Path, default=HERE / "traces", help="directory of CSVs")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "fit.json",
                        help="JSON results")
    parser.add_argument("--repeats", type=int, default=7, help="fits timed per setting")
    parser.add_argument("--origins", type=int, default=24, help="accuracy origins per series")


def synthetic(step: float, days: float, seed: int = 0) -> Series:
    """A daily sine, a weaker weekly one and Gaussian noise (sd 6) at ``step`` seconds."""
    t = np.arange(int(days * DAY / step)) * step
    values = (100 + 40 * np.sin(2 * np.pi * t / DAY) + 10 * np.sin(2 * np.pi * t / WEEK)
              + np.random.default_rng(seed).normal(0, 6, t.size))
    return Series(START, step, np.maximum(values, 0.0))


def recipe(step: float) -> Recipe:
    """The recipe the handler builds for a policy of the CRD defaults at ``step``."""
    return Recipe(models=None, quantile=QUANTILE, step=step, history=HISTORY,
                  horizon=backtest_steps(AHEAD, step))


def timing(series: Series, repeats: int) -> dict[str, float]:
    """p50 and p90 wall seconds of ``fit_forecaster`` on ``series``, after one fit untimed
    (a pool worker imports scikit-learn once, not per fit)."""
    fit_forecaster(series, recipe(series.step))
    seconds = sorted(fit_forecaster(series, recipe(series.step))[1] for _ in range(repeats))
    return {"points": len(series), "p50": statistics.median(seconds),
            "p90": float(np.percentile(seconds, 90))}


@dataclass(frozen=True)
class Score:
    mae: float
    seasonal_naive_mae: float
    origins: int
    models: tuple[str, ...]


def accuracy(series: Series, origins: int) -> Score:
    """MAE 15 minutes ahead of fits on the 7 days before each origin, and of seasonal naive."""
    step = series.step
    ahead = max(1, math.ceil(AHEAD / step))
    day = round(DAY / step)
    history = round(HISTORY / step)
    spacing = round(SPACING / step)
    latest = len(series) - ahead
    ours, naive, models = [], [], []
    for origin in range(latest, latest - origins * spacing, -spacing):
        if origin - history < 0:
            break
        past = Series(series.start + (origin - history) * step, step,
                      series.values[origin - history:origin])
        model, _ = fit_forecaster(past, recipe(step))
        forecast = model.predict(ahead, (QUANTILE,))
        actual = series.values[origin + ahead - 1]
        ours.append(abs(float(forecast.mean[-1]) - actual))
        naive.append(abs(float(series.values[origin + ahead - 1 - day]) - actual))
        models.append(forecast.model)
    return Score(float(np.mean(ours)), float(np.mean(naive)), len(ours), tuple(models))


def run(args: argparse.Namespace) -> int:
    cases: dict[str, Series] = {"synthetic": synthetic(60.0, 9)}
    for name in TRACES:
        path = Path(args.traces) / name
        if not path.exists():
            print(f"missing {path}", file=sys.stderr)
            return 1
        cases[name.removesuffix(".csv")] = load_trace(path, finest=60.0)
    started = time.perf_counter()
    results: dict[str, object] = {"timing": {
        "7d_1m_synthetic": timing(synthetic(60.0, 7), args.repeats),
        "14d_5m_synthetic": timing(synthetic(300.0, 14), args.repeats),
    }}
    scores: dict[str, dict[str, object]] = {}
    for name, fine in tqdm(cases.items(), desc="accuracy"):
        for label, series in (("1m", fine), ("5m", fine.resample(300.0, "sum"))):
            if name == "synthetic" and label == "5m":
                series = synthetic(300.0, 9)  # the same shape and noise level per point
            score = accuracy(series, args.origins)
            scores[f"{name}@{label}"] = {
                "mae": score.mae, "seasonal_naive_mae": score.seasonal_naive_mae,
                "ratio": score.mae / score.seasonal_naive_mae, "origins": score.origins,
                "models": sorted(set(score.models))}
    results["accuracy_15min"] = scores
    results["seconds"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0
