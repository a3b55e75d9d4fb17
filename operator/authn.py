"""Who may read /metrics: bearer tokens reviewed by the API server, as kube-rbac-proxy does.

/metrics names every tenant's policies and load values. With ``--metrics-auth kubernetes``
a request must carry ``Authorization: Bearer <token>``; the API server says whose token it
is (a TokenReview: not authenticated is 401) and whether that user may ``get`` the
non-resource URL ``/metrics`` (a SubjectAccessReview: not allowed is 403), exactly the
checks of kube-rbac-proxy and of controller-runtime's ``WithAuthenticationAndAuthorization``
filter. A review that fails (the API server is down or refuses us) is 503, never a pass.

Verdicts are cached per token for a short time, so a Prometheus scraping every 15 s costs
the API server two reviews a minute, not eight. The cache is keyed by the token's SHA-256
(no token is kept in memory) and holds a bounded number of entries, least recently used
dropped first, so callers sending random tokens cannot grow it; at most a few reviews run
at once, so such callers cannot take every thread of the Kubernetes adapter from the
control loop either (beyond that, 503 at once).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from foreseer.operator.clusters import Access, ClusterError, User

logger = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
METRICS_VERB = "get"
ALLOWED_TTL = 60.0
"""Seconds an allowed token is trusted without a new review (controller-runtime: 1 min
for the TokenReview). A revoked binding is noticed within this long."""
DENIED_TTL = 10.0
"""Seconds a refused token (401 or 403) stays refused: short, so a fresh RoleBinding for
Prometheus works soon, and long enough that a misconfigured scraper costs few reviews."""
CACHE_ENTRIES = 1024
"""Tokens remembered at most (about 100 bytes each)."""
CONCURRENT_REVIEWS = 2
"""Reviews in flight at most; the Kubernetes adapter's threads also serve the control loop."""


class Reviewer(Protocol):
    """What the guard asks the API server; `foreseer.operator.clusters.Cluster` answers."""

    async def review_token(self, token: str) -> User | None: ...

    async def review_access(self, user: User, path: str, verb: str) -> Access: ...


@dataclass(frozen=True)
class Verdict:
    """What to answer a request: 200 lets it through; 401, 403 or 503 refuse it."""

    status: int
    """The HTTP status."""
    message: str
    """The response body for a refusal; names the user, never the token."""

    @property
    def allowed(self) -> bool:
        return self.status == 200


UNAUTHENTICATED = Verdict(401, "Unauthorized")
BUSY = Verdict(503, "too many token reviews in flight; try again")


class MetricsGuard:
    """Decides whether a request's ``Authorization`` header may read /metrics, with a cache."""

    def __init__(self, reviewer: Reviewer, *, clock: Callable[[], float] = time.monotonic,
                 allowed_ttl: float = ALLOWED_TTL, denied_ttl: float = DENIED_TTL,
                 entries: int = CACHE_ENTRIES, concurrent: int = CONCURRENT_REVIEWS) -> None:
        """`reviewer`: asks the API server. `clock`: monotonic seconds, for the TTLs.
        `entries`: tokens cached at most. `concurrent`: reviews in flight at most."""
        self._reviewer = reviewer
        self._clock = clock
        self._allowed_ttl = allowed_ttl
        self._denied_ttl = denied_ttl
        self._entries = entries
        self._concurrent = concurrent
        self._in_flight = 0
        self._cache: OrderedDict[bytes, tuple[float, Verdict]] = OrderedDict()
        self.reviews = 0
        """Token reviews sent so far (for tests and debugging)."""

    def __len__(self) -> int:
        """Tokens cached now."""
        return len(self._cache)

    async def check(self, authorization: str | None) -> Verdict:
        """The verdict for a request carrying this ``Authorization`` header value (or none)."""
        token = _bearer(authorization)
        if token is None:
            return UNAUTHENTICATED
        key = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None:
            expires, verdict = cached
            if now < expires:
                self._cache.move_to_end(key)
                return verdict
            del self._cache[key]
        if self._in_flight >= self._concurrent:
            return BUSY
        self._in_flight += 1
        try:
            verdict = await self._review(token)
        finally:
            self._in_flight -= 1
        if verdict.status != 503:  # a failed review is retried on the next request
            ttl = self._allowed_ttl if verdict.allowed else self._denied_ttl
            self._cache[key] = (self._clock() + ttl, verdict)
            while len(self._cache) > self._entries:
                self._cache.popitem(last=False)
        return verdict

    async def _review(self, token: str) -> Verdict:
        self.reviews += 1
        try:
            user = await self._reviewer.review_token(token)
            if user is None:
                return UNAUTHENTICATED
            access = await self._reviewer.review_access(user, METRICS_PATH, METRICS_VERB)
        except ClusterError as exc:
            logger.warning("could not review a /metrics caller's token: %s", exc)
            return Verdict(503, "the API server could not review the token; try again")
        if not access.allowed:
            logger.info("refused /metrics to %s: %s", user.name, access.reason or "not allowed")
            return Verdict(403, f"Forbidden: user {user.name!r} may not get {METRICS_PATH}")
        return Verdict(200, "")


def _bearer(authorization: str | None) -> str | None:
    """The token of a ``Bearer`` Authorization header (the scheme is case-insensitive, as in
    RFC 7235), or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token

