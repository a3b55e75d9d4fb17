"""`make demo` in miniature: a short replay through the real operator and a real Prometheus
leaves a plot, a summary and no process behind, also when it is interrupted."""

from __future__ import annotations

import asyncio
import datetime
import os
from pathlib import Path

import pytest

from foreseer.lab import demo
from foreseer.lab.waiting import until

pytestmark = pytest.mark.integration


def short(out_dir: Path) -> demo.DemoSettings:
    """Three days of history and 20 trace minutes of the morning ramp per 4 wall seconds."""
    return demo.DemoSettings(start_hour=6.0, hours=2.0, history_days=3.0, ready_after=3.0,
                             out_dir=out_dir)


def alive(groups: list[int]) -> list[str]:
    """Processes still running in any of ``groups`` (Linux /proc), as ``pid command``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # the process ended while we looked
        fields = text.rsplit(")", 1)[1].split()
        if int(fields[2]) in groups and fields[0] != "Z":
            found.append(f"{stat.parent.name} {text.split(' (', 1)[1].split(')')[0]}")
    return found


async def test_a_short_demo_prints_the_table_and_leaves_a_plot_a_summary_and_no_process(
    prometheus_binaries: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    before = demo.child_groups()  # other tests' processes, if any, are not the demo's
    outcome = await asyncio.wait_for(demo.run(short(tmp_path)), timeout=90)

    assert len(outcome.process_groups) == 2  # Prometheus; the operator with its fitting pool
    assert alive(outcome.process_groups) == []
    assert demo.child_groups() <= before
    assert outcome.plot is not None and outcome.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "demo.csv").read_text().count("\n") == len(outcome.samples) + 1
    assert "the reactive twin" in outcome.summary and "foreseer in Auto mode" in outcome.summary
    printed = capsys.readouterr().out
    assert demo.Table.HEADER in printed
    assert "Thu 07:" in printed  # rows carry the trace's local time
    # Both twins were really scaled by the operator: the ramp needs more than they started with.
    first, last = outcome.samples[0], outcome.samples[-1]
    for namespace in demo.MODES:
        assert last.desired[namespace] > first.desired[namespace], namespace


async def test_an_interrupted_demo_stops_every_process_it_started(
    prometheus_binaries: tuple[str, str], tmp_path: Path,
) -> None:
    before = demo.child_groups()
    outcome = demo.Outcome()
    task = asyncio.create_task(demo.run(short(tmp_path), outcome))
    await until(lambda: outcome.samples or task.done(), timeout=60,
                what="the replay's first sample")
    task.cancel()  # what Ctrl-C and SIGTERM do to `make demo`
    with pytest.raises(asyncio.CancelledError):
        await task

    assert len(outcome.process_groups) == 2
    assert alive(outcome.process_groups) == []
    assert demo.child_groups() <= before


def test_a_replay_the_trace_does_not_cover_is_refused_with_the_trace_span(
    tmp_path: Path,
) -> None:
    settings = demo.DemoSettings(day=datetime.date(1995, 8, 5), history_days=7.0,
                                 out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"covers 1995-08-0\d .* do not fit"):
        demo.replay_of(settings, anchor=0.0)
    assert os.listdir(tmp_path) == []
