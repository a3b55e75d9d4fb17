"""The Kubernetes client benchmark, run small: every client reads the emulator's /scale."""

import argparse
import json
from pathlib import Path

from foreseer.bench.kubeclients import CLIENTS, add_arguments, median_of, run


def test_rounds_are_summarised_by_their_median_per_number() -> None:
    rounds = [{"p50_ms": 1.0, "threads_created": 8.0}, {"p50_ms": 3.0, "threads_created": 8.0},
              {"p50_ms": 2.0, "threads_created": 0.0}]
    assert median_of(rounds) == {"p50_ms": 2.0, "threads_created": 8.0}


def test_every_client_is_measured_on_the_emulator_and_written_down(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "kubeclients.json"
    args = parser.parse_args(["--calls", "20", "--concurrent-calls", "40", "--concurrency",
                              "4", "--rounds", "1", "--out", str(out)])
    assert run(args) == 0
    results = json.loads(out.read_text())
    assert set(results) == set(CLIENTS)
    for numbers in results.values():
        assert 0 < numbers["p50_ms"] <= numbers["p99_ms"]
        assert numbers["cpu_ms_per_call"] > 0 and numbers["calls_per_second"] > 0
    assert results["foreseer Cluster (kubernetes, thread pool)"]["threads_created"] >= 1
    assert "| lightkube |" in out.with_suffix(".md").read_text()
