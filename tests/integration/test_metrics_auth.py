"""/metrics behind bearer-token authn and authz (``--metrics-auth kubernetes``), through real
HTTP: a client to the operator's server, the operator's Kubernetes adapter to the emulator,
which reviews tokens and access as an API server does."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import kmock
import pytest
from aiohttp import web
from operator_stack import StartOperator

from foreseer.lab.emulator import ACCESS_REVIEWS, TOKEN_REVIEWS, AccessRule, Emulator
from foreseer.operator.authn import MetricsGuard
from foreseer.operator.clusters import Cluster
from foreseer.operator.settings import MetricsAuth
from foreseer.operator.telemetry import Health, Telemetry, bound_port, serve

pytestmark = pytest.mark.integration

PROMETHEUS = "system:serviceaccount:monitoring:prometheus"
PROMETHEUS_GROUPS = ["system:serviceaccounts", "system:serviceaccounts:monitoring",
                     "system:authenticated"]
TENANT = "system:serviceaccount:shop:web"
SERIES = 'foreseer_final_replicas{namespace="shop",policy="web"} 3.0'


class FrozenClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Endpoint:
    """The operator's /metrics and /healthz server, guarded, and what the test looks at."""

    base: str
    guard: MetricsGuard
    clock: FrozenClock
    emulator: Emulator
    session: aiohttp.ClientSession

    async def get(self, path: str = "/metrics", token: str | None = None,
                  authorization: str | None = None) -> tuple[int, str, aiohttp.ClientResponse]:
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if authorization is not None:
            headers["Authorization"] = authorization
        async with self.session.get(self.base + path, headers=headers) as response:
            return response.status, await response.text(), response

    def reviews(self, kind: str | None = None) -> list[dict[str, object]]:
        return [r for r in self.emulator.reviews if kind is None or r["kind"] == kind]


def seed_identities(emulator: Emulator) -> None:
    """Prometheus' and a tenant's service-account tokens; only Prometheus may get /metrics."""
    emulator.tokens["prometheus-token"] = {"username": PROMETHEUS, "uid": "uid-prometheus",
                                           "groups": PROMETHEUS_GROUPS,
                                           "extra": {"authentication.kubernetes.io/pod-name":
                                                     ["prometheus-0"]}}
    emulator.tokens["tenant-token"] = {"username": TENANT, "uid": "uid-web",
                                       "groups": ["system:serviceaccounts",
                                                  "system:authenticated"]}
    emulator.access_rules.append(AccessRule(verbs=("get",), paths=("/metrics",), user=PROMETHEUS))


@pytest.fixture
async def cluster(kubeconfig: Path) -> AsyncIterator[Cluster]:
    cluster = Cluster()
    yield cluster
    await cluster.close()


@contextlib.asynccontextmanager
async def start(emulator: Emulator, guard: MetricsGuard,
                clock: FrozenClock) -> AsyncIterator[Endpoint]:
    seed_identities(emulator)
    telemetry = Telemetry()
    telemetry.observe_decision("shop", "web", 3, {telemetry.final: 3}, "Closed")
    runner: web.AppRunner = await serve(telemetry, Health(ready=True), "127.0.0.1", 0, guard)
    try:
        async with aiohttp.ClientSession() as session:
            yield Endpoint(f"http://127.0.0.1:{bound_port(runner)}", guard, clock, emulator,
                           session)
    finally:
        await runner.cleanup()


@pytest.fixture
async def endpoint(emulator: Emulator, cluster: Cluster) -> AsyncIterator[Endpoint]:
    clock = FrozenClock()
    async with start(emulator, MetricsGuard(cluster, clock=clock), clock) as served:
        yield served


async def test_a_request_without_a_token_is_401_and_asks_the_api_server_nothing(
        endpoint: Endpoint) -> None:
    status, _, response = await endpoint.get()
    assert status == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    status, _, _ = await endpoint.get(authorization="Basic cHJvbWV0aGV1czpzZWNyZXQ=")
    assert status == 401
    assert endpoint.reviews() == []


async def test_a_token_the_api_server_does_not_authenticate_is_401_without_an_access_review(
        endpoint: Endpoint) -> None:
    status, text, _ = await endpoint.get(token="forged-token")
    assert status == 401
    assert "# HELP" not in text
    assert [r["kind"] for r in endpoint.reviews()] == ["TokenReview"]


async def test_an_authenticated_caller_without_the_grant_is_403_naming_the_user(
        endpoint: Endpoint) -> None:
    status, text, _ = await endpoint.get(token="tenant-token")
    assert status == 403
    assert TENANT in text
    assert "tenant-token" not in text
    assert SERIES not in text


async def test_prometheus_with_the_grant_reads_the_metrics(endpoint: Endpoint) -> None:
    status, text, _ = await endpoint.get(token="prometheus-token")
    assert status == 200
    assert SERIES in text
    (token_review,) = endpoint.reviews("TokenReview")
    assert token_review["spec"] == {"token": "prometheus-token"}
    (access_review,) = endpoint.reviews("SubjectAccessReview")
    # What kube-rbac-proxy and controller-runtime's filter ask: the reviewed user, as is.
    assert access_review["spec"] == {
        "user": PROMETHEUS, "uid": "uid-prometheus", "groups": PROMETHEUS_GROUPS,
        "extra": {"authentication.kubernetes.io/pod-name": ["prometheus-0"]},
        "nonResourceAttributes": {"path": "/metrics", "verb": "get"}}


async def test_the_bearer_scheme_is_matched_case_insensitively_as_http_wants(
        endpoint: Endpoint) -> None:
    assert (await endpoint.get(authorization="bearer  prometheus-token"))[0] == 200
    assert (await endpoint.get(authorization="Bearer "))[0] == 401


async def test_a_cached_grant_spares_the_api_server_a_review_until_a_minute_has_passed(
        endpoint: Endpoint) -> None:
    for _ in range(3):
        assert (await endpoint.get(token="prometheus-token"))[0] == 200
    assert len(endpoint.reviews()) == 2  # one TokenReview, one SubjectAccessReview
    endpoint.clock.now += 59.0
    assert (await endpoint.get(token="prometheus-token"))[0] == 200
    assert len(endpoint.reviews()) == 2
    endpoint.clock.now += 2.0
    assert (await endpoint.get(token="prometheus-token"))[0] == 200
    assert len(endpoint.reviews()) == 4


async def test_a_refusal_is_remembered_for_ten_seconds_so_a_new_grant_soon_takes_effect(
        endpoint: Endpoint) -> None:
    assert (await endpoint.get(token="tenant-token"))[0] == 403
    endpoint.emulator.access_rules.append(
        AccessRule(verbs=("get",), paths=("/metrics",), group="system:serviceaccounts"))
    endpoint.clock.now += 9.0
    assert (await endpoint.get(token="tenant-token"))[0] == 403
    assert len(endpoint.reviews()) == 2
    endpoint.clock.now += 2.0
    assert (await endpoint.get(token="tenant-token"))[0] == 200
    assert len(endpoint.reviews()) == 4


async def test_a_revoked_grant_ends_access_once_the_cached_grant_expires(
        endpoint: Endpoint) -> None:
    assert (await endpoint.get(token="prometheus-token"))[0] == 200
    endpoint.emulator.access_rules.clear()
    assert (await endpoint.get(token="prometheus-token"))[0] == 200  # still cached
    endpoint.clock.now += 61.0
    assert (await endpoint.get(token="prometheus-token"))[0] == 403


@pytest.mark.parametrize("failing", [TOKEN_REVIEWS, ACCESS_REVIEWS],
                         ids=["token review", "access review"])
@pytest.mark.parametrize("status", [500, 403, 429])
async def test_a_failed_review_is_503_and_is_not_cached(
        endpoint: Endpoint, failing: kmock.resource, status: int) -> None:
    fault = endpoint.emulator.fail_next("POST", failing, status=status)
    code, text, _ = await endpoint.get(token="prometheus-token")
    assert code == 503
    assert SERIES not in text
    assert fault.hits == 1
    assert len(endpoint.guard) == 0
    assert (await endpoint.get(token="prometheus-token"))[0] == 200


async def test_an_unreachable_api_server_is_503_not_a_crash(
        emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A kubeconfig naming a port nobody listens on: the adapter gets no answer at all.
    config = emulator.write_kubeconfig(tmp_path / "nowhere")
    config.write_text(config.read_text().replace(str(emulator.url).rstrip("/"),
                                                 f"http://127.0.0.1:{free_port()}"))
    monkeypatch.setenv("KUBECONFIG", str(config))
    cluster = Cluster(timeout=2.0)
    clock = FrozenClock()
    try:
        async with start(emulator, MetricsGuard(cluster, clock=clock), clock) as served:
            assert (await served.get(token="prometheus-token"))[0] == 503
            assert (await served.get("/healthz"))[0] == 200
    finally:
        await cluster.close()


async def test_healthz_needs_no_token(endpoint: Endpoint) -> None:
    status, text, _ = await endpoint.get("/healthz")
    assert status == 200
    assert '"ready": true' in text
    assert endpoint.reviews() == []


async def test_random_tokens_cannot_grow_the_cache_beyond_its_bound(
        emulator: Emulator, cluster: Cluster) -> None:
    clock = FrozenClock()
    guard = MetricsGuard(cluster, clock=clock, entries=3)
    async with start(emulator, guard, clock) as served:
        for n in range(10):
            assert (await served.get(token=f"random-{n}"))[0] == 401
        assert len(served.guard) == 3
        assert (await served.get(token="prometheus-token"))[0] == 200
        assert len(served.guard) == 3


async def test_reviews_beyond_the_concurrency_bound_are_503_at_once(
        emulator: Emulator, cluster: Cluster) -> None:
    released = asyncio.Event()
    emulator.before_next("POST", TOKEN_REVIEWS, released.wait)
    clock = FrozenClock()
    guard = MetricsGuard(cluster, clock=clock, concurrent=1)
    async with start(emulator, guard, clock) as served:
        held = asyncio.create_task(served.get(token="prometheus-token"))
        await asyncio.wait_for(_held_review(served.guard), timeout=10)
        status, text, _ = await served.get(token="tenant-token")
        assert status == 503
        assert "in flight" in text
        released.set()
        assert (await asyncio.wait_for(held, timeout=10))[0] == 200


async def _held_review(guard: MetricsGuard) -> None:
    while guard.reviews == 0:
        await asyncio.sleep(0.01)


async def test_the_operator_run_with_kubernetes_metrics_auth_guards_metrics_and_not_healthz(
        emulator: Emulator, start_operator: StartOperator) -> None:
    seed_identities(emulator)
    # No policy: the Prometheus URL is never queried.
    operator = await start_operator("http://127.0.0.1:9", metrics_auth=MetricsAuth.KUBERNETES)
    base = f"http://127.0.0.1:{operator.runtime.metrics_port}"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/healthz") as response:
            assert response.status == 200
        async with session.get(f"{base}/metrics") as response:
            assert response.status == 401
        headers = {"Authorization": "Bearer tenant-token"}
        async with session.get(f"{base}/metrics", headers=headers) as response:
            assert response.status == 403
        headers = {"Authorization": "Bearer prometheus-token"}
        async with session.get(f"{base}/metrics", headers=headers) as response:
            assert response.status == 200
            assert "foreseer_status_writes_total" in await response.text()


def free_port() -> int:
    """A loopback port that was just bound and released, so nothing listens on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
