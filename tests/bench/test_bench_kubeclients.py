"""The Kubernetes client benchmark, run small on the shipped client (the async ones live in
`make bench-kubeclients`' own venv): it reads the emulator's /scale and is written down."""

import argparse
import json
from pathlib import Path

from foreseer.bench.kubeclients import add_arguments, median_of, run

SHIPPED = "foreseer Cluster (kubernetes, thread pool)"


def test_rounds_are_summarised_by_their_median_per_number() -> None:
    rounds = [{"p50_ms": 1.0, "threads_created": 8.0}, {"p50_ms": 3.0, "threads_created": 8.0},
              {"p50_ms": 2.0, "threads_created": 0.0}]
    assert median_of(rounds) == {"p50_ms": 2.0, "threads_created": 8.0}


def test_the_shipped_client_is_measured_on_the_emulator_and_written_down(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "kubeclients.json"
    args = parser.parse_args(["--calls", "20", "--concurrent-calls", "40", "--concurrency",
                              "4", "--rounds", "1", "--clients", SHIPPED, "--out", str(out)])
    assert run(args) == 0
    results = json.loads(out.read_text())
    assert set(results) == {SHIPPED}
    numbers = results[SHIPPED]
    assert 0 < numbers["p50_ms"] <= numbers["p99_ms"]
    assert numbers["cpu_ms_per_call"] > 0 and numbers["calls_per_second"] > 0
    assert numbers["threads_created"] >= 1  # its pool
    assert f"| {SHIPPED} |" in out.with_suffix(".md").read_text()
