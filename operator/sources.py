"""Metric sources: where the load comes from (the imperative shell's Prometheus adapter).

Like a KEDA scaler, a source has a small interface (`MetricSource`): the current value of a
query, and a policy's history of it. A reading is a float or a typed `MetricOutage` (ERROR,
EMPTY, NaN, STALE, INVALID), never a made-up zero: a missing metric must not look like no load.

`Prometheus` implements it with aiohttp in the operator's own event loop: no threads. Each
query has a timeout and a bounded number of retries (exponential backoff on 408/429/5xx,
timeouts and lost connections). A failure is a `QueryError` that says what failed; when
Prometheus answered with its JSON error, it carries Prometheus' ``errorType`` and message.
Histories are kept incrementally: the first call per (namespace, policy, metric) reads the
whole window in range queries of at most `max_points` points (Prometheus refuses more than
11,000); later calls read only the new tail, plus the newest known point again, because that
one may have been evaluated before its scrape landed. A failed read leaves NaN (missing) in
the grid and is re-read on the next call.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import itertools
import json
import logging
import math
import re
import ssl
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import numpy as np

from foreseer.operator.deciding import MetricOutage, OutageKind
from foreseer.operator.forecasting import history_grid
from foreseer.operator.settings import PrometheusSettings
from foreseer.predictors.series import Series

logger = logging.getLogger(__name__)

HistoryKey = tuple[str, str, str]
"""(namespace, policy name, metric name): one history per metric of a policy."""
Reading = float | MetricOutage

# Statuses worth retrying: timeouts, throttling and server-side failures (not bad PromQL).
_RETRY_ON = (408, 429, 500, 502, 503, 504)
# Prometheus rejects range queries above 11,000 points per series.
_MAX_POINTS = 10_000
# Retries wait 0.2 s, 0.4 s, 0.8 s, ... (at most 5 s; a Retry-After in seconds, up to that).
_BACKOFF = 0.2
_BACKOFF_MAX = 5.0
# Queries to Prometheus at once; more wait in the loop, before their timeout starts.
# Prometheus itself runs 20 at once by default (--query.max-concurrency) and queues the rest.
_CONNECTIONS = 20
# The largest answer read: a tenant's query over thousands of series must not make the
# shared operator hold (and decode) hundreds of MB. A 10,000-point range of one series is
# about 300 KB.
MAX_ANSWER_BYTES = 32 * 2**20


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
        """Release the connections."""
        ...


class QueryError(Exception):
    """A query that failed: transport, HTTP status, Prometheus' own error, or a bad shape.

    `status`: the HTTP status, when there was an answer. `error_type`: Prometheus' own
    ``errorType`` (``bad_data``, ``execution``, ``timeout``, ...), when it answered with its
    JSON error."""

    def __init__(self, message: str, *, status: int | None = None,
                 error_type: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type


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
    """`MetricSource` over the Prometheus HTTP API, on aiohttp in the operator's event loop."""

    def __init__(self, settings: PrometheusSettings, *, stale_after: float = 300.0,
                 max_points: int = _MAX_POINTS,
                 on_invalid: Callable[[HistoryKey, int], None] | None = None) -> None:
        """`stale_after`: seconds after which the newest sample of a reading is STALE (where
        Prometheus can tell a sample's time: queries over series; an aggregate is as fresh as
        Prometheus' lookback of 5m). `on_invalid`: told how many samples of a history read
        were not a load (and became gaps). Needs no event loop: the HTTP session is made in
        the loop of the first query."""
        self.settings = settings
        self._on_invalid = on_invalid
        self.stale_after = stale_after
        self.max_points = max_points
        self._url = settings.url.rstrip("/")
        if settings.insecure:
            logger.warning("TLS verification of Prometheus at %s is OFF (insecure)", settings.url)
        # The proxy variables are read once, now. aiohttp's trust_env would read them, and
        # ~/.netrc, on every request, each time in a thread of the loop's default executor.
        self._proxy, proxy_headers = _environment_proxy(self._url)
        # Through the proxy, plain HTTP carries the proxy's credentials on each request;
        # HTTPS on the CONNECT that opens the tunnel.
        tunnel = self._url.startswith("https://")
        self._proxy_headers = proxy_headers if tunnel else None
        self._headers = {} if tunnel or proxy_headers is None else proxy_headers
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._slots = asyncio.Semaphore(_CONNECTIONS)
        self._histories: dict[HistoryKey, _Tracked] = {}
        # Prometheus' own evaluation limit; its durations take whole units only ("10s").
        self._timeout = f"{max(1, math.ceil(settings.timeout))}s"

    async def current(self, query: str, now: float, *, tenant: str | None = None) -> Reading:
        """The instant value at `now`, and (concurrently) when its newest sample was scraped."""
        value: Any
        sampled: Any
        value, sampled = await asyncio.gather(
            self._instant(query, now, tenant),
            self._instant(f"max(timestamp({query}))", now, tenant),
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
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

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
            result = await self._range(tracked.query, start, end, step, tenant)
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

    async def _instant(self, query: str, at: float, tenant: str | None) -> Any:
        return await self._query("query", {"query": query, "time": repr(at)}, tenant)

    async def _range(self, query: str, start: float, end: float, step: float,
                     tenant: str | None) -> Any:
        return await self._query("query_range", {"query": query, "start": repr(start),
                                                 "end": repr(end), "step": repr(step)}, tenant)

    async def _query(self, endpoint: str, form: dict[str, str], tenant: str | None) -> Any:
        """POST one query (form-encoded, with Prometheus' own timeout) and return its
        ``data.result``, retrying timeouts, lost connections, 408, 429 and 5xx up to
        `settings.retries` times with exponential backoff. Every failure is a QueryError."""
        form = {**form, "timeout": self._timeout}
        # The enforced label goes in the URL: a tenancy proxy looks for it there.
        parameter = self.settings.tenancy_parameter
        params = {parameter: tenant} if parameter and tenant is not None else None
        for attempt in itertools.count():
            try:
                return await self._post(f"{self._url}/api/v1/{endpoint}", form, params)
            except _TransientError as exc:
                if attempt >= self.settings.retries:
                    raise QueryError(str(exc), status=exc.status) from exc
                await asyncio.sleep(exc.retry_after if exc.retry_after is not None
                                    else min(_BACKOFF_MAX, _BACKOFF * 2 ** attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _post(self, url: str, form: dict[str, str], params: dict[str, str] | None) -> Any:
        try:
            # Read on every request: projected service-account tokens rotate.
            headers = {**self._headers, **self.settings.headers()}
            basic = self.settings.basic_auth()
            if basic is not None:
                headers["Authorization"] = _basic(*basic)
        except OSError as exc:
            raise QueryError(f"cannot read the credentials for Prometheus: {exc.strerror} "
                             f"({exc.filename})") from exc
        except ValueError as exc:  # UnicodeDecodeError: not a text file
            raise QueryError(f"cannot read the credentials for Prometheus: {exc}") from exc
        try:
            session = self._client()
        except OSError as exc:  # ssl.SSLError is one too
            raise QueryError(f"cannot load the TLS CA file for Prometheus: "
                             f"{bounded(exc.strerror or str(exc))} ({self.settings.ca_file})"
                             ) from exc
        try:
            async with self._slots, session.post(
                    url, data=form, params=params, headers=headers, proxy=self._proxy,
                    proxy_headers=self._proxy_headers,
                    timeout=aiohttp.ClientTimeout(total=self.settings.timeout)) as response:
                status, retry_after = response.status, response.headers.get("Retry-After")
                body = await _bounded_read(response)
        except TimeoutError as exc:  # before ClientConnectionError: ServerTimeoutError is both
            raise _TransientError(f"Prometheus at {self.settings.url} did not answer within "
                                  f"{self.settings.timeout:g}s (timeout)") from exc
        except aiohttp.ClientConnectorCertificateError as exc:
            problem = exc.certificate_error
            reason = (f"[SSL: {problem.reason}] {problem.verify_message}"
                      if isinstance(problem, ssl.SSLCertVerificationError) else str(problem))
            raise QueryError(f"TLS verification of Prometheus at {self.settings.url} failed: "
                             f"{bounded(reason)}") from exc
        except aiohttp.ClientSSLError as exc:
            raise QueryError(f"TLS with Prometheus at {self.settings.url} failed: "
                             f"{bounded(str(exc.os_error))}") from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise _TransientError(f"cannot connect to Prometheus at {self.settings.url}: it "
                                  "closed the connection without an answer") from exc
        except aiohttp.ClientConnectionError as exc:
            raise _TransientError(f"cannot connect to Prometheus at {self.settings.url}") from exc
        except aiohttp.ClientPayloadError as exc:
            raise _TransientError(f"Prometheus at {self.settings.url} broke off its answer "
                                  "(the connection was lost mid-body)") from exc
        except aiohttp.ClientError as exc:
            raise QueryError(bounded(f"{type(exc).__name__}: {exc}")) from exc
        except ValueError as exc:  # aiohttp refusing a header (a token with a newline), a URL
            raise QueryError(f"cannot send the query to Prometheus: {bounded(str(exc))}") from exc
        if status in _RETRY_ON:
            raise _TransientError(_http_error(status, body).args[0], status=status,
                                  retry_after=_seconds(retry_after))
        if status >= 300:
            raise _http_error(status, body)
        try:
            answer = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise QueryError(f"Prometheus at {self.settings.url} answered with a body that is "
                             "not JSON", status=status) from exc
        if isinstance(answer, dict) and answer.get("status") == "error":
            raise _http_error(status, body)
        try:
            return answer["data"]["result"]
        except (KeyError, TypeError) as exc:
            raise QueryError(f"Prometheus at {self.settings.url} answered without "
                             "data.result", status=status) from exc

    def _client(self) -> aiohttp.ClientSession:
        """The session, made on first use inside the running loop (aiohttp binds it there);
        QueryError once the source is closed (a new session would never be closed)."""
        if self._closed:
            raise QueryError("the Prometheus source is closed")
        if self._session is None or self._session.closed:
            tls = (_ssl_context(self.settings.verify()) if self._url.startswith("https://")
                   else True)
            connector = aiohttp.TCPConnector(limit=_CONNECTIONS, ssl=tls)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session


async def _bounded_read(response: aiohttp.ClientResponse) -> bytes:
    """The answer's body, refused (QueryError) past MAX_ANSWER_BYTES before it is all read."""
    too_big = QueryError(f"Prometheus' answer is larger than {MAX_ANSWER_BYTES // 2**20} MiB: "
                         "aggregate the query (sum, avg, max) to one series",
                         status=response.status)
    if response.content_length is not None and response.content_length > MAX_ANSWER_BYTES:
        raise too_big
    body = bytearray()
    async for chunk in response.content.iter_chunked(2**16):
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            raise too_big
    return bytes(body)


class _TransientError(Exception):
    """A failure worth retrying: a timeout, a lost connection, 408, 429 or 5xx."""

    def __init__(self, message: str, *, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def _http_error(status: int, body: bytes) -> QueryError:
    """The QueryError of an error answer: Prometheus' own ``errorType`` and ``error`` when
    the body is its JSON, otherwise the body's text as it is (e.g. an auth proxy's)."""
    with contextlib.suppress(ValueError, RecursionError):
        answer = json.loads(body)
        if (isinstance(answer, dict) and answer.get("status") == "error"
                and isinstance(answer.get("error"), str)):
            kind = answer.get("errorType")
            error_type = kind if isinstance(kind, str) and kind else None
            return QueryError(f"HTTP {status} {error_type or 'error'}: "
                              f"{bounded(answer['error'])}",
                              status=status, error_type=error_type)
    text = body.decode(errors="replace").strip()
    return QueryError(f"HTTP {status}: {bounded(text) if text else 'no message'}", status=status)


def _seconds(retry_after: str | None) -> float | None:
    """A Retry-After of delay-seconds, at most _BACKOFF_MAX (an HTTP date is ignored)."""
    try:
        return None if retry_after is None else min(_BACKOFF_MAX, max(0.0, float(retry_after)))
    except ValueError:
        return None


def _ssl_context(verify: bool | str) -> ssl.SSLContext:
    """TLS as `PrometheusSettings.verify()` says: a private CA, the system's, or none."""
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)


def _basic(user: str, password: str) -> str:
    """An ``Authorization`` (or ``Proxy-Authorization``) header of HTTP basic auth."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _environment_proxy(url: str) -> tuple[str | None, dict[str, str] | None]:
    """The proxy HTTP(S)_PROXY and NO_PROXY give for `url`, and the header with its
    credentials, if it has any."""
    parts = urllib.parse.urlsplit(url)
    if parts.hostname and _bypassed(parts):
        return None, None
    proxy = urllib.request.getproxies().get(parts.scheme)
    if not proxy:
        return None, None
    found = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if found.username is None:
        return found.geturl(), None
    credentials = _basic(urllib.parse.unquote(found.username),
                         urllib.parse.unquote(found.password or ""))
    bare = found._replace(netloc=found.netloc.rpartition("@")[2])
    return bare.geturl(), {"Proxy-Authorization": credentials}


def _bypassed(parts: urllib.parse.SplitResult) -> bool:
    """Whether NO_PROXY exempts the URL, as requests reads it: host names and domains,
    ``host:port`` entries and, for an IP address, CIDR blocks."""
    assert parts.hostname is not None
    if urllib.request.proxy_bypass(parts.hostname) or urllib.request.proxy_bypass(parts.netloc):
        return True
    try:
        address = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return False
    for entry in (urllib.request.getproxies().get("no") or "").split(","):
        with contextlib.suppress(ValueError):
            if "/" in entry and address in ipaddress.ip_network(entry.strip(), strict=False):
                return True
    return False


def _regrid(series: Series, first: float, points: int) -> Series:
    """The same values on the grid [first, first + points * step), NaN where not known."""
    values = np.full(points, np.nan)
    offset = round((series.start - first) / series.step)
    lo, hi = max(0, offset), min(points, offset + len(series))
    if lo < hi:
        values[lo:hi] = series.values[lo - offset:hi - offset]
    return Series(first, series.step, values)


# A label set as Prometheus prints it in errors: {__name__="x", namespace="bank", ...}.
_LABEL_SET = re.compile(r"\{[^{}]*\}")
ERROR_LIMIT = 200


def bounded(text: str) -> str:
    """Prometheus' error text as it may reach a status or an Event: series label sets
    replaced by ``{…}`` (an error such as a failed join prints the series it matched, which
    may be another tenant's) and at most ERROR_LIMIT characters."""
    stripped = _LABEL_SET.sub("{…}", text)
    return stripped if len(stripped) <= ERROR_LIMIT else stripped[:ERROR_LIMIT - 1] + "…"
