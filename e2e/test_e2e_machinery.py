"""The e2e suite's own machinery, checked here without a cluster (these tests are not marked
e2e, so `make test` runs them): the exporter follows replicas as the cluster reports them,
backfilled history and live samples form one series, and the relay that in-cluster operators
use passes an outage through. Only the cluster is stood in for, by a replica table."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from metering import HISTORY, STEP, BackgroundLoop, Level, Metering, ReplicaReader, Wave

from foreseer.lab.exporter import Workload
from foreseer.lab.prometheus import PrometheusMissingError, binaries


class ReplicaTable:
    """A `metering.ReplicaSource` standing in for the cluster: one namespace's replicas."""

    def __init__(self, **replicas: int) -> None:
        self.replicas = replicas
        self.reads = 0

    def all_replicas(self, namespace: str) -> dict[str, int]:
        self.reads += 1
        return dict(self.replicas)


@pytest.fixture(scope="module")
def metering(tmp_path_factory: pytest.TempPathFactory,
             ) -> Iterator[tuple[Metering, ReplicaTable]]:
    try:
        binaries()
    except PrometheusMissingError as exc:
        pytest.skip(str(exc))
    loop = BackgroundLoop()
    table = ReplicaTable(wave=2, flat=4)
    reader = ReplicaReader(table, "ns")
    metering = Metering(tmp_path_factory.mktemp("metering"), loop, relay_host="127.0.0.1")
    try:
        metering.start([Workload("wave", "ns", Wave(), reader.of("wave")),
                        Workload("flat", "ns", Level(200), reader.of("flat"))], now=time.time())
        yield metering, table
    finally:
        metering.close()
        loop.close()


def query(url: str, promql: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/api/v1/query?"
                                f"{urllib.parse.urlencode({'query': promql})}",
                                timeout=5) as response:
        return list(json.load(response)["data"]["result"])


def test_the_load_per_replica_follows_the_replicas_the_cluster_reports(
        metering: tuple[Metering, ReplicaTable]) -> None:
    stack, table = metering
    assert stack.prometheus is not None
    [sample] = stack.prometheus.wait_for('workload_load_per_replica{app="flat"} == 50', 30)
    assert sample["metric"]["namespace"] == "ns"
    table.replicas["flat"] = 10
    stack.prometheus.wait_for('workload_load_per_replica{app="flat"} == 20', 30)
    assert table.reads >= 2


def test_backfilled_history_and_live_samples_are_one_series(
        metering: tuple[Metering, ReplicaTable]) -> None:
    stack, _ = metering
    assert stack.prometheus is not None
    assert stack.prometheus.query('count(workload_load{app="wave"})')[0]["value"][1] == "1"
    end = time.time()
    [series] = stack.prometheus.query_range('workload_load{app="wave"}', end - HISTORY + STEP,
                                            end, STEP)
    values = {float(v) for _, v in series["values"]}
    assert values == {Wave().low, Wave().high}
    assert len(series["values"]) >= HISTORY / STEP - 2


def test_the_relay_serves_prometheus_and_passes_an_outage_through(
        metering: tuple[Metering, ReplicaTable]) -> None:
    stack, _ = metering
    assert stack.prometheus is not None and stack.url_for_operator != stack.prometheus.url
    assert query(stack.url_for_operator, 'workload_load{app="flat"}')
    stack.prometheus.stop()
    try:
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            query(stack.url_for_operator, "up")
    finally:
        stack.prometheus.start()
    assert query(stack.url_for_operator, "up")


def test_the_wave_peaks_at_multiples_of_its_period() -> None:
    wave = Wave(low=1, high=9, period=600, width=120)
    assert wave.next_peak(1_200) == 1_200
    assert wave.next_peak(1_201) == 1_800
    assert [wave(t) for t in (1_200, 1_319, 1_320, 1_799)] == [9, 9, 1, 1]
