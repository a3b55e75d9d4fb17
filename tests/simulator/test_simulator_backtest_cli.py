from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import daily

from foreseer.cli import main
from foreseer.predictors.series import Series

POLICY = """\
apiVersion: foreseer.dev/v1alpha1
kind: ScalingPolicy
metadata: {name: web}
spec:
  scaleTargetRef: {name: web}
  minReplicas: 1
  maxReplicas: 50
  metrics:
    - name: requests
      query: sum(workload_load)
      targetPerReplica: 10
  forecast: {step: 5m, retrainInterval: 1d}
"""


def _policy(tmp_path: Path, text: str = POLICY) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def test_a_backtest_prints_one_row_per_policy_and_writes_json_and_a_plot(
    trace_csv: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    csv = trace_csv("web", *daily(1.0))
    out, png = tmp_path / "out.json", tmp_path / "out.png"
    code = main(["backtest", "--trace", str(csv), "--retrain", "1d", "--json", str(out),
                 "--plot", str(png)])
    printed = capsys.readouterr().out
    assert code == 0
    for label in ("foreseer Auto", "foreseer Reactive", "HPA v2", "PHPA-style", "Crane-style",
                  "oracle"):
        assert label in printed
    document = json.loads(out.read_text())
    assert document["policies"]["oracle"]["underprov_time"] == 0.0
    assert set(document["policies"]["HPA v2"]) >= {
        "underprov_time", "unserved_load", "replica_hours", "replica_hours_vs_oracle", "actions"}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("content", "message"), [
    ("timestamp,value\n0,1\n60,2\n30,3\n", "timestamp 30 is not after the previous one"),
    ("\x00\xff\xfe garbage", "cannot read trace|header"),
    ("timestamp,value\n0,1\n", "at least two points"),
])
def test_a_bad_trace_exits_2_with_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str,
) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content.encode("latin-1"))
    assert main(["backtest", "--trace", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("foreseer backtest: ")
    assert "Traceback" not in err
    assert re.search(message, err)


def test_a_policy_that_fails_validation_names_the_field(
    trace_csv: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    csv = trace_csv("web", *daily(0.5))
    policy = _policy(tmp_path, POLICY.replace("minReplicas: 1", "minReplicas: 80"))
    assert main(["backtest", "--trace", str(csv), "--policy", str(policy)]) == 2
    err = capsys.readouterr().err
    assert "policy" in err and "minReplicas" in err


def test_an_unreachable_prometheus_exits_2_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    from foreseer.lab.prometheus import free_port

    url = f"http://127.0.0.1:{free_port()}"
    code = main(["backtest", "--prometheus", url, "--policy", str(_policy(tmp_path)),
                 "--since", "1d"])
    assert code == 2
    assert f"Prometheus at {url} is unreachable" in capsys.readouterr().err


def test_a_backtest_replays_the_policys_query_from_a_real_prometheus(
    prometheus_binaries: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    from foreseer.lab.prometheus import openmetrics, running

    step = 300.0
    end = (time.time() // step) * step
    _, values = daily(2.0, step)
    history = Series(end - step * values.size, step, values)
    metrics = openmetrics("workload_load", {"app": "web"}, history)
    out = tmp_path / "replay.json"
    with running(tmp_path / "prom", [], metrics) as server:
        code = main(["backtest", "--prometheus", server.url, "--policy", str(_policy(tmp_path)),
                     "--since", "2d", "--json", str(out)])
        queries = [q.get("query") for q in server.queries()]
    assert code == 0, capsys.readouterr().err
    assert "sum(workload_load)" in queries
    document = json.loads(out.read_text())
    assert document["trace"] == "requests"
    # Real units: the policy's own target, no rescaling.
    assert document["workload"]["target_per_replica"] == pytest.approx(10.0)
    assert document["policies"]["HPA v2"]["replica_hours"] > 0
    assert np.isfinite(document["policies"]["foreseer Auto"]["replica_hours_vs_oracle"])


def test_prometheus_replay_needs_a_policy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backtest", "--prometheus", "http://127.0.0.1:1"]) == 2
    assert "--prometheus needs --policy" in capsys.readouterr().err

