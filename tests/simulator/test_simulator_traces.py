from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import START, write_csv

from foreseer.simulator.scenarios import Scenario, resolve
from foreseer.simulator.traces import TraceError, read_trace


def test_a_trace_reads_iso_timestamps_and_interpolates_between_points(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", START + np.array([0.0, 60.0]), np.array([10.0, 20.0]))
    trace = read_trace(path)
    assert trace.name == "t"
    assert trace.step == 60.0
    assert float(trace.load(START + 30)) == pytest.approx(15.0)


def test_a_missing_value_is_a_gap_not_a_zero_load(tmp_path: Path) -> None:
    path = tmp_path / "gap.csv"
    path.write_text("timestamp,value\n0,10\n60,\n120,30\n")
    trace = read_trace(path)
    assert list(trace.values) == [10.0, 30.0]
    assert float(trace.load(60)) == pytest.approx(20.0)


def test_an_unreadable_trace_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match=r"cannot read trace .*nope\.csv"):
        read_trace(tmp_path / "nope.csv")


def test_a_trace_without_the_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("0,1\n60,2\n")
    with pytest.raises(TraceError, match="header 'timestamp,value'"):
        read_trace(path)


def test_a_timestamp_that_goes_back_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "back.csv"
    path.write_text("timestamp,value\n0,1\n60,2\n30,3\n")
    with pytest.raises(TraceError, match=r"back.csv:4: timestamp 30 is not after the previous"):
        read_trace(path)


def test_a_value_that_is_not_a_number_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "text.csv"
    path.write_text("timestamp,value\n0,1\n60,lots\n")
    with pytest.raises(TraceError, match=r"text\.csv:3"):
        read_trace(path)


def test_a_negative_load_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "neg.csv"
    path.write_text("timestamp,value\n0,1\n60,-2\n")
    with pytest.raises(TraceError, match="non-negative"):
        read_trace(path)


def test_the_load_is_scaled_so_its_99th_percentile_needs_the_chosen_replicas(
    tmp_path: Path,
) -> None:
    values = np.r_[np.linspace(1, 100, 999), 10_000.0]  # one spike must not set the scale
    path = write_csv(tmp_path / "s.csv", START + 60 * np.arange(values.size), values)
    workload = resolve(read_trace(path), Scenario(p99_replicas=20, capacity=2.0))
    assert np.percentile(workload.trace.values, 99) == pytest.approx(40.0)
    assert workload.target_per_replica == pytest.approx(1.4)


def test_startup_and_interval_default_to_at_least_one_trace_step(tmp_path: Path) -> None:
    fine = write_csv(tmp_path / "fine.csv", START + 10 * np.arange(50), np.ones(50))
    coarse = write_csv(tmp_path / "coarse.csv", START + 300 * np.arange(50), np.ones(50))
    assert (resolve(read_trace(fine), Scenario()).startup,
            resolve(read_trace(fine), Scenario()).interval) == (120.0, 30.0)
    assert (resolve(read_trace(coarse), Scenario()).startup,
            resolve(read_trace(coarse), Scenario()).interval) == (300.0, 300.0)
