import json
import math
from pathlib import Path

import numpy as np
import pytest

from foreseer.bench.__main__ import main
from foreseer.bench.anchors import HoltWintersAnchor, SeasonalNaiveAnchor, daily_period
from foreseer.bench.forecasting import HORIZONS, default_recipe, horizon_steps, load_trace
from foreseer.operator.forecasting import recipe_for
from foreseer.operator.specs import ForecastSpec
from foreseer.predictors.models import MODELS
from foreseer.predictors.series import Series

SUMMARY_KEYS = {
    "median_mase_ratio_auto_vs_best_anchor",
    "median_pinball_ratio_auto_vs_best_anchor",
    "median_mase_ratio_auto_vs_seasonal_naive",
    "mean_abs_coverage_error_q90",
    "fit_seconds_p50",
    "fit_seconds_max",
    "predict_ms_p99",
}


def write_trace(path: Path, step: int, days: float, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    n = int(days * 86400 / step)
    t = np.arange(n) * step
    values = 100 + 50 * np.sin(2 * np.pi * t / 86400) + rng.normal(0, 5, n)
    stamps = [f"{np.datetime64(1_700_000_000 + int(s), 's')}Z" for s in t]
    rows = "\n".join(f"{s},{v:.3f}" for s, v in zip(stamps, np.maximum(values, 0), strict=True))
    path.write_text("timestamp,value\n" + rows + "\n")


def test_a_trace_finer_than_five_minutes_is_summed_to_five_minutes(tmp_path):
    path = tmp_path / "fine.csv"
    path.write_text("timestamp,value\n" + "".join(f"{60 * i},{i % 5}\n" for i in range(20)))
    series = load_trace(path)
    assert series.step == 300.0
    np.testing.assert_allclose(series.values, [10.0, 10.0, 10.0, 10.0])


def test_a_csv_without_the_timestamp_value_header_is_refused_clearly(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("time,load\n1,2\n")
    with pytest.raises(ValueError, match="timestamp,value"):
        load_trace(path)


def test_horizons_are_one_step_fifteen_and_sixty_minutes_in_steps_at_least_one():
    assert horizon_steps(300.0) == {"1step": 1, "15min": 3, "60min": 12}
    assert horizon_steps(1800.0) == {"1step": 1, "15min": 1, "60min": 2}


def test_auto_is_the_operators_recipe_at_the_crd_defaults_at_the_series_step():
    shipped = recipe_for(ForecastSpec(), 900.0)
    recipe = default_recipe(300.0, 900.0, dict(MODELS))
    assert (recipe.models, recipe.quantile, recipe.history) == (
        shipped.models, shipped.quantile, shipped.history)
    assert (recipe.step, recipe.horizon) == (300.0, 3)
    some = {name: MODELS[name] for name in sorted(MODELS)[:2]}
    assert default_recipe(300.0, 900.0, some).models == tuple(some)
    assert default_recipe(300.0, 900.0, some, history=2_592_000.0).history == 2_592_000.0


def test_the_seasonal_naive_anchor_repeats_yesterday():
    values = np.arange(2 * 288, dtype=np.float64)
    forecast = SeasonalNaiveAnchor().fit(Series(0.0, 300.0, values)).predict(3)
    np.testing.assert_allclose(forecast.mean, values[288:291])
    assert daily_period(300.0, 100) is None


def test_the_holt_winters_anchor_follows_a_daily_season():
    t = np.arange(4 * 288)
    values = 100 + 50 * np.sin(2 * np.pi * t / 288)
    forecast = HoltWintersAnchor().fit(Series(0.0, 300.0, values)).predict(12)
    expected = 100 + 50 * np.sin(2 * np.pi * (t[-1] + 1 + np.arange(12)) / 288)
    np.testing.assert_allclose(forecast.mean, expected, atol=3.0)


def test_the_forecast_benchmark_writes_the_issue_json_shape_and_a_markdown_table(tmp_path):
    traces = tmp_path / "traces"
    traces.mkdir()
    write_trace(traces / "five_minute.csv", 300, 4)
    write_trace(traces / "one_minute.csv", 60, 4, seed=1)
    out = tmp_path / "out" / "forecast.json"
    argv = ["forecast", "--traces", str(traces), "--out", str(out), "--origins", "8"]
    assert main([*argv, "--refit-every", "4", "--models", "naive", "ewma"]) == 0
    report = json.loads(out.read_text())
    assert set(report["summary"]) == SUMMARY_KEYS
    assert set(report["summary"]["median_mase_ratio_auto_vs_best_anchor"]) == set(HORIZONS)
    assert [s["name"] for s in report["series"]] == ["five_minute", "one_minute"]
    for entry in report["series"]:
        assert set(entry) == {"name", "step_seconds", "models", "selected"}
        assert entry["step_seconds"] == 300.0
        assert set(entry["models"]) == {
            "naive",
            "ewma",
            "auto",
            "anchor_naive",
            "anchor_seasonal_naive",
            "anchor_holt_winters",
        }
        for metrics in entry["models"].values():
            assert set(metrics) == {"mase", "smape", "pinball_q90", "coverage_q90"}
            assert all(math.isfinite(v) for m in metrics.values() for v in m.values())
    table = out.with_suffix(".md").read_text()
    assert "| auto |" in table
    assert "median_pinball_ratio_auto_vs_best_anchor" in table


def test_an_empty_traces_directory_is_a_clear_error_not_a_crash(tmp_path, capsys):
    assert main(["forecast", "--traces", str(tmp_path), "--out", str(tmp_path / "f.json")]) == 2
    assert "no *.csv" in capsys.readouterr().err


def write_rows(path: Path, values: list[float]) -> None:
    rows = "\n".join(f"{1_700_000_000 + 300 * i},{v}" for i, v in enumerate(values))
    path.write_text("timestamp,value\n" + rows + "\n")


def test_traces_it_cannot_use_are_skipped_with_their_reason_and_the_rest_still_run(
    tmp_path, capsys
):
    traces = tmp_path / "traces"
    traces.mkdir()
    write_trace(traces / "good.csv", 300, 4)
    write_rows(traces / "short.csv", [10.0] * 30)
    write_rows(traces / "negative.csv", [5.0, -2.5] * 600)
    write_rows(traces / "missing.csv", [math.nan] * 600)
    out = tmp_path / "forecast.json"
    argv = ["forecast", "--traces", str(traces), "--out", str(out), "--origins", "8"]
    assert main([*argv, "--refit-every", "4", "--models", "naive"]) == 0
    report = json.loads(out.read_text())
    assert [s["name"] for s in report["series"]] == ["good"]
    reasons = {s["name"]: s["reason"] for s in report["skipped"]}
    assert "no test origins" in reasons["short"]
    assert "600 negative value(s), first -2.5 at index 1" in reasons["negative"]
    assert "no observed values" in reasons["missing"]
    assert "skipping short.csv" in capsys.readouterr().err
    assert "## Skipped" in out.with_suffix(".md").read_text()


def test_a_directory_of_only_unusable_traces_is_a_clear_error(tmp_path, capsys):
    write_rows(tmp_path / "short.csv", [10.0] * 30)
    assert main(["forecast", "--traces", str(tmp_path), "--out", str(tmp_path / "f.json")]) == 2
    assert "no usable trace" in capsys.readouterr().err
    assert not (tmp_path / "f.json").exists()
