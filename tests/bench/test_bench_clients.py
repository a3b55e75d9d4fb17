"""The client benchmark's arithmetic and its table (the measuring itself needs Prometheus)."""

from foreseer.bench.clients import _quantile, markdown


def test_a_quantile_is_the_sample_at_its_rank_never_between_two() -> None:
    ordered = [float(i) for i in range(1, 101)]
    assert _quantile(ordered, 0.5) == 50.0
    assert _quantile(ordered, 0.99) == 99.0
    assert _quantile([3.0], 0.99) == 3.0


def test_the_table_names_the_client_and_says_when_readings_failed() -> None:
    result = {"label": "aiohttp", "commit": "abc", "concurrent": 200, "history_days": 14.0,
              "sequential_p50_ms": 0.93, "sequential_p99_ms": 4.45,
              "concurrent_per_second": 1009.7, "history_seconds": 0.067,
              "cpu_ms_per_query": 0.227, "threads_created": 0, "rss_mb_after_import": 58.8,
              "rss_mb_operator": 79.2, "errors": 0}
    table = markdown(result)
    assert "| aiohttp | 0.93 / 4.45 ms | 1010 | 0.07 s | 0.23 ms | 0 | 59 MB (79 MB) |" in table
    assert "errors" not in markdown(result)
    assert "3 readings were errors" in markdown({**result, "errors": 3})
