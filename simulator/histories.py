"""Traces from Prometheus history: a policy's own query replayed over a past range.

The only I/O of the simulator besides reading CSVs; errors come back as
`TraceError` with a message a user can act on.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np

from foreseer.operator.durations import format_duration
from foreseer.operator.specs import MetricSpec
from foreseer.simulator.traces import Trace, TraceError

# Prometheus refuses a range query with more than 11,000 points; ask in chunks below that.
MAX_POINTS_PER_QUERY = 10_000
TIMEOUT_SECONDS = 30


def fetch_trace(url: str, metric: MetricSpec, since: float, until: float, step: float) -> Trace:
    """Run ``metric.query`` over ``[since, until]`` every ``step`` seconds."""
    from prometheus_api_client import PrometheusConnect
    from prometheus_api_client.exceptions import PrometheusApiClientException
    from requests import RequestException

    client = PrometheusConnect(url=url, disable_ssl=False, timeout=TIMEOUT_SECONDS)
    times: list[float] = []
    values: list[float] = []
    chunk = MAX_POINTS_PER_QUERY * step
    start = since
    try:
        while start < until:
            end = min(until, start + chunk)
            result = client.custom_query_range(
                metric.query,
                start_time=datetime.fromtimestamp(start, UTC),
                end_time=datetime.fromtimestamp(end, UTC),
                step=format_duration(step),
            )
            if len(result) > 1:
                raise TraceError(
                    f"query of metric {metric.name!r} returns {len(result)} series; it must return"
                    " one, the total load (wrap it in sum(...))"
                )
            for stamp, text in result[0]["values"] if result else ():
                value = float(text)
                # A gap or NaN sample is missing data, never a zero load.
                if math.isfinite(value) and (not times or float(stamp) > times[-1]):
                    times.append(float(stamp))
                    values.append(value)
            start = end + step
    except RequestException as exc:
        raise TraceError(f"Prometheus at {url} is unreachable: {exc.__class__.__name__}: {exc}"
                         ) from exc
    except PrometheusApiClientException as exc:
        raise TraceError(f"Prometheus rejected the query of metric {metric.name!r}: {exc}") from exc
    if len(times) < 2:
        raise TraceError(
            f"query of metric {metric.name!r} returned {len(times)} sample(s) in the last"
            f" {format_duration(until - since)}; nothing to replay"
        )
    return Trace(metric.name, np.asarray(times), np.asarray(values))
