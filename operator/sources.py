"""Metric sources: where the load comes from (the imperative shell's Prometheus adapter).

Like a KEDA scaler, a source has a small interface (`MetricSource`): the current value of a
query, and a policy's history of it. A reading is a float or a typed `MetricOutage` (ERROR,
EMPTY, NaN, STALE, INVALID), never a made-up zero: a missing metric must not look like no load.

`Prometheus` implements it with prometheus-api-client. Each blocking HTTP call runs in a small
thread pool, so the Kopf event loop never waits on the network; each call has a timeout and a
bounded number of retries (urllib3's Retry with backoff on 408/429/5xx and connection errors).
Histories are kept incrementally: the first call per (namespace, policy, metric) reads the
whole window in range queries of at most `max_points` points (Prometheus refuses more than
11,000); later calls read only the new tail, plus the newest known point again, because that
one may have been evaluated before its scrape landed. A failed read leaves NaN (missing) in
the grid and is re-read on the next call.
"""

from __future__ import annotations

import ast
import asyncio
import concurrent.futures
import contextlib
import datetime
import functools
import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
import requests
import urllib3
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from foreseer.operator.deciding import MetricOutage, OutageKind
from foreseer.operator.forecasting import history_grid
from foreseer.operator.settings import PrometheusSettings
from foreseer.predictors.series import Series

logger = logging.getLogger(__name__)

HistoryKey = tuple[str, str, str]
"""(namespace, policy name, metric name): one history per metric of a policy."""
Reading = float | MetricOutage
T = TypeVar("T")

# Statuses worth retrying: timeouts, throttling and server-side failures (not bad PromQL).
_RETRY_ON = (408, 429, 500, 502, 503, 504)
# Prometheus rejects range queries above 11,000 points per series.
_MAX_POINTS = 10_000


class MetricSource(Protocol):
    """A source of load metrics for the control loop (the KEDA scaler idea, for forecasting)."""

    async def current(self, query: str, now: float, *, tenant: str | None = None) -> Reading:
        """The query's value at `now`, or why there is none. `tenant`: the namespace a
        tenancy proxy in front of the source should enforce."""
        ...

    async def history(self, key: HistoryKey, query: str, *, step: float, window: float,
                      now: float, tenant: str | None = None) -> Series | None:
        """The query on a `step` grid over the `window` seconds up to `now` (NaN = missing);
        None while nothing at all is known."""
        ...

    def forget(self, namespace: str, name: str) -> None:
        """Drop the histories of a deleted policy."""
        ...

    async def close(self) -> None:
        """Release connections and threads."""
        ...


class QueryError(Exception):
    """A query that failed: transport, HTTP status, Prometheus' own error, or a bad shape."""


def _is_scalar(result: Any) -> bool:
    """A scalar result is ``[<unix time>, "<value>"]``."""
    return (isinstance(result, list) and len(result) == 2
            and isinstance(result[0], int | float) and not isinstance(result[0], bool)
            and isinstance(result[1], str))


def _is_sample(sample: Any) -> bool:
    """A sample is ``[<unix time>, "<value>"]`` too."""
    return _is_scalar(sample)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def read_value(result: Any, now: float, sample_time: float | None, stale_after: float) -> Reading:
    """Classify an instant query's result: a load value, or the kind of outage.

    Any shape Prometheus' API does not define (a bare list, an object, a sample that is not
    ``[time, "value"]``) is an ERROR outage naming what came, never an exception.
    `sample_time` is when the newest sample was scraped, if known (see `Prometheus.current`).
    """
    if _is_scalar(result):
        value_text = result[1]
    elif not isinstance(result, list):
        return MetricOutage(OutageKind.ERROR, f"Prometheus answered with a {type(result).__name__}"
                                              " where a list of series belongs")
    elif not result:
        return MetricOutage(OutageKind.EMPTY, "the query returned no series")
    elif not all(isinstance(series, dict) for series in result):
        return MetricOutage(OutageKind.ERROR, "Prometheus answered with a result that is not a "
                                              "list of series")
    elif len(result) > 1:
        return MetricOutage(OutageKind.ERROR, f"the query returned {len(result)} series; "
                                              "aggregate it to one, e.g. with sum(...)")
    elif "values" in result[0] and "value" not in result[0]:
        return MetricOutage(OutageKind.ERROR, "the query returned a range vector; reduce it to "
                                              "one value, e.g. with avg_over_time(...)")
    elif not _is_sample(result[0].get("value")):
        return MetricOutage(OutageKind.ERROR, "Prometheus answered with a series whose value is "
                                              "not a [time, \"number\"] sample")
    else:
        value_text = result[0]["value"][1]
    value = _number(value_text)
    if value is None:
        return MetricOutage(OutageKind.ERROR,
                            f"the query returned {value_text[:40]!r}, not a number")
    if math.isnan(value):
        return MetricOutage(OutageKind.NAN, "the query returned NaN")
    if math.isinf(value) or value < 0:
        return MetricOutage(OutageKind.INVALID, f"the query returned {value_text}, not a load")
    if sample_time is not None and now - sample_time > stale_after:
        return MetricOutage(OutageKind.STALE, f"the newest sample is {now - sample_time:.0f}s "
                                              f"old (limit {stale_after:.0f}s)")
    return value


def sample_time(result: Any) -> float | None:
    """The time an answer of ``max(timestamp(query))`` gives, or None when it gives none."""
    reading = read_value(result, 0.0, None, math.inf)
    return reading if isinstance(reading, float) else None


def range_samples(result: Any) -> list[tuple[float, float]]:
    """The (time, value) samples of a range query's one series; raises QueryError on a shape
    Prometheus' API does not define. A value that is not a number is NaN here."""
    if not isinstance(result, list) or not all(isinstance(series, dict) for series in result):
        raise QueryError("Prometheus answered a range query with something other than a list "
                         "of series")
    if len(result) > 1:
        raise QueryError(f"the query returned {len(result)} series; aggregate it to one, "
                         "e.g. with sum(...)")
    if not result:
        return []
    values = result[0].get("values")
    if not isinstance(values, list) or not all(_is_sample(v) for v in values):
        raise QueryError("Prometheus answered a range query with a series whose values are "
                         "not [time, \"number\"] samples")
    samples = []
    for t, text in values:
        value = _number(text)
        samples.append((float(t), math.nan if value is None else value))
    return samples


@dataclass
class _Tracked:
    """One policy metric's history, and how far it has been read."""

    query: str
    step: float
    window: float
    series: Series
    read_until: float
    """Grid time of the first point not read successfully yet."""


class Prometheus:
    """`MetricSource` over the Prometheus HTTP API (prometheus-api-client)."""

    def __init__(self, settings: PrometheusSettings, *, stale_after: float = 300.0,
                 workers: int = 8, max_points: int = _MAX_POINTS,
                 on_invalid: Callable[[HistoryKey, int], None] | None = None) -> None:
        """`stale_after`: seconds after which the newest sample of a reading is STALE (where
        Prometheus can tell a sample's time: queries over series; an aggregate is as fresh as
        Prometheus' lookback of 5m). `workers`: threads doing HTTP calls. `on_invalid`: told
        how many samples of a history read were not a load (and became gaps)."""
        self.settings = settings
        self._on_invalid = on_invalid
        self.stale_after = stale_after
        self.max_points = max_points
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, "prometheus")
        session = requests.Session()
        session.verify = settings.verify()
        if settings.insecure:
            # Asked for explicitly: say it once, instead of urllib3 warning on every query.
            logger.warning("TLS verification of Prometheus at %s is OFF (insecure)", settings.url)
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        # With trust_env, requests re-reads the proxy variables (and ~/.netrc) on every query:
        # 0.5 of its 1.8 ms of CPU per query here, more on a pod with many service variables.
        # They are read once, now: the proxies and a REQUESTS_CA_BUNDLE still apply.
        environment = session.merge_environment_settings(settings.url, {}, None, session.verify,
                                                         None)
        session.trust_env = False
        session.proxies, session.verify = environment["proxies"], environment["verify"]
        retry = Retry(total=settings.retries, backoff_factor=0.2, status_forcelist=_RETRY_ON,
                      allowed_methods=("GET", "POST"), raise_on_status=False)
        self._client = PrometheusConnect(url=settings.url.rstrip("/"), session=session,
                                         retry=retry, timeout=settings.timeout, method="POST")
        self._histories: dict[HistoryKey, _Tracked] = {}
        # Prometheus' own evaluation limit; its durations take whole units only ("10s").
        self._timeout = f"{max(1, math.ceil(settings.timeout))}s"

    async def current(self, query: str, now: float, *, tenant: str | None = None) -> Reading:
        """The instant value at `now`, and (concurrently) when its newest sample was scraped."""
        value: Any
        sampled: Any
        value, sampled = await asyncio.gather(
            self._call(self._instant, query, now, tenant),
            self._call(self._instant, f"max(timestamp({query}))", now, tenant),
            return_exceptions=True)
        if isinstance(value, BaseException):
            return MetricOutage(OutageKind.ERROR, str(value))
        newest = None if isinstance(sampled, BaseException) else sample_time(sampled)
        return read_value(value, now, newest, self.stale_after)

    async def history(self, key: HistoryKey, query: str, *, step: float, window: float,
                      now: float, tenant: str | None = None) -> Series | None:
        """The metric's history over `window` up to `now`; reads only what is not known yet."""
        first, points = history_grid(now, step, window)
        last = first + (points - 1) * step
        tracked = self._histories.get(key)
        if tracked is None or (tracked.query, tracked.step, tracked.window) != (query, step,
                                                                                window):
            tracked = _Tracked(query, step, window, Series(first, step, np.full(points, np.nan)),
                               read_until=first)
            self._histories[key] = tracked
        else:
            tracked.series = _regrid(tracked.series, first, points)
            tracked.read_until = max(tracked.read_until, first)
        try:
            await self._read(key, tracked, tracked.read_until, last, tenant)
        except QueryError as exc:
            logger.warning("reading the history of %s failed, will retry: %s", "/".join(key), exc)
        else:
            # The newest point is read again next time: its scrape may have landed late.
            tracked.read_until = last
        return tracked.series if tracked.series.observed() else None

    def forget(self, namespace: str, name: str) -> None:
        for key in [k for k in self._histories if k[:2] == (namespace, name)]:
            del self._histories[key]

    async def close(self) -> None:
        self._client.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _read(self, key: HistoryKey, tracked: _Tracked, since: float, until: float,
                    tenant: str | None) -> None:
        """Range-query [since, until] in chunks and write the samples into the grid.

        A sample that is not a load (NaN, ±Inf, negative, not a number) is a gap: one bad
        scrape must not make the whole window unusable for fitting. Such samples are
        counted through ``on_invalid``.
        """
        step, series = tracked.step, tracked.series
        chunk = step * (self.max_points - 1)
        start = since
        invalid = 0
        while start <= until:
            end = min(until, start + chunk)
            result = await self._call(self._range, tracked.query, start, end, step, tenant)
            for t, v in range_samples(result):
                index = round((t - series.start) / step)
                if 0 <= index < len(series):
                    if math.isfinite(v) and v >= 0:
                        series.values[index] = v
                    else:
                        series.values[index] = np.nan
                        invalid += 1
            start = end + step
        if invalid and self._on_invalid is not None:
            self._on_invalid(key, invalid)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args))

    def _instant(self, query: str, at: float, tenant: str | None) -> Any:
        return self._guarded(lambda: self._client.custom_query(
            query, params={"time": at, **self._params(tenant)}))

    def _range(self, query: str, start: float, end: float, step: float,
               tenant: str | None) -> Any:
        return self._guarded(lambda: self._client.custom_query_range(
            query, start_time=_utc(start), end_time=_utc(end), step=str(step),
            params=self._params(tenant)))

    def _params(self, tenant: str | None) -> dict[str, str]:
        """Prometheus' own timeout, and the enforced label for a tenancy proxy."""
        params = {"timeout": self._timeout}
        parameter = self.settings.tenancy_parameter
        if parameter and tenant is not None:
            params[parameter] = tenant
        return params

    def _guarded(self, query: Callable[[], Any]) -> Any:
        """Run one HTTP query with fresh credentials; every failure becomes a QueryError."""
        self._client.headers = self.settings.headers()  # re-read: tokens rotate
        self._client.auth = self.settings.basic_auth()
        try:
            return query()
        except PrometheusApiClientException as exc:
            raise QueryError(_prometheus_error(str(exc))) from exc
        except requests.exceptions.SSLError as exc:
            reason = _SSL_REASON.search(str(exc))
            raise QueryError(f"TLS verification of Prometheus at {self.settings.url} failed"
                             + (f": {reason.group(0)}" if reason else "")) from exc
        except requests.JSONDecodeError as exc:
            raise QueryError(f"Prometheus at {self.settings.url} answered with a body that is "
                             "not JSON") from exc
        except (requests.Timeout, requests.ConnectionError) as exc:
            if _timed_out(exc):
                raise QueryError(f"Prometheus at {self.settings.url} did not answer within "
                                 f"{self.settings.timeout:g}s (timeout)") from exc
            raise QueryError(f"cannot connect to Prometheus at {self.settings.url}") from exc
        except (KeyError, TypeError) as exc:
            # The client indexes the answer as {"data": {"result": ...}}.
            raise QueryError(f"Prometheus at {self.settings.url} answered without "
                             "data.result") from exc
        except (requests.RequestException, OSError, ValueError) as exc:
            raise QueryError(bounded(f"{type(exc).__name__}: {exc}")) from exc


def _timed_out(exc: requests.RequestException) -> bool:
    """Whether the request timed out reading the answer. With retries, requests reports a
    read timeout as a ConnectionError around urllib3's MaxRetryError, whose reason tells."""
    if isinstance(exc, requests.ReadTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, urllib3.exceptions.MaxRetryError):
        reason = reason.reason
    return isinstance(reason, urllib3.exceptions.ReadTimeoutError | TimeoutError)


def _regrid(series: Series, first: float, points: int) -> Series:
    """The same values on the grid [first, first + points * step), NaN where not known."""
    values = np.full(points, np.nan)
    offset = round((series.start - first) / series.step)
    lo, hi = max(0, offset), min(points, offset + len(series))
    if lo < hi:
        values[lo:hi] = series.values[lo - offset:hi - offset]
    return Series(first, series.step, values)


def _utc(t: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(t, tz=datetime.UTC)


_SSL_REASON = re.compile(r"\[SSL: [A-Z_]+\][^'\")(]*")
_CLIENT_ERROR = re.compile(r"HTTP Status Code (\d+) \((b'.*'|b\".*\")\)", re.DOTALL)


# A label set as Prometheus prints it in errors: {__name__="x", namespace="bank", ...}.
_LABEL_SET = re.compile(r"\{[^{}]*\}")
ERROR_LIMIT = 200


def bounded(text: str) -> str:
    """Prometheus' error text as it may reach a status or an Event: series label sets
    replaced by ``{…}`` (an error such as a failed join prints the series it matched, which
    may be another tenant's) and at most ERROR_LIMIT characters."""
    stripped = _LABEL_SET.sub("{…}", text)
    return stripped if len(stripped) <= ERROR_LIMIT else stripped[:ERROR_LIMIT - 1] + "…"


def _prometheus_error(text: str) -> str:
    """Prometheus' own error message (e.g. a PromQL parse error) out of the client's text,
    which is ``HTTP Status Code 400 (b'{"status":"error","error":"..."}')``."""
    found = _CLIENT_ERROR.search(text)
    if found is None:
        return bounded(text)
    try:
        content = ast.literal_eval(found.group(2)).decode(errors="replace").strip()
    except (ValueError, SyntaxError):
        return bounded(text)
    # Not Prometheus' JSON (e.g. the auth layer's plain text) is shown as it is.
    with contextlib.suppress(ValueError, KeyError, TypeError):
        content = str(json.loads(content)["error"])
    return f"HTTP {found.group(1)}: {bounded(content)}"
