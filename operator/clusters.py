"""The Kubernetes adapter (imperative shell): /scale, the policy's status, Events, pods, the
token and access reviews that guard /metrics, and the Leases that hold shards.

It speaks plain REST through the `kubernetes` client's ApiClient, which brings every way of
authenticating (in-cluster service account with token rotation, kubeconfig, exec plugins),
and works the same against a real API server and the test emulator. Any scalable kind works:
the resource behind ``scaleTargetRef`` is found by API discovery, as kubectl does, and the
scale goes through the ``/scale`` subresource (so only ``*/scale`` RBAC is needed).

Blocking calls run in a small thread pool: the Kopf event loop never waits on the network.
`patch_scale` writes with the resourceVersion it just read and, on 409 Conflict (another
writer came in between), reads again and re-applies the same replica count, a bounded number
of times, so a decision is not lost to a race. `patch_policy_status` can carry the
resourceVersion its state was read from, and then raises Conflict instead of overwriting a
status another writer changed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import functools
import json
import logging
import os
import random
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import kubernetes
from kubernetes.client import ApiClient, Configuration
from kubernetes.config import ConfigException

from foreseer.operator.specs import GROUP, PLURAL, VERSION, ScaleTargetRef

logger = logging.getLogger(__name__)

Body = dict[str, Any]
T = TypeVar("T")

_MERGE_PATCH = "application/merge-patch+json"
REPORTING_COMPONENT = "foreseer"


class ClusterError(Exception):
    """An API call failed; `status` is the HTTP status (0 when the server was not reached)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class TargetNotFound(ClusterError):
    """The scale target does not exist, or its kind is not served or not scalable."""


class Conflict(ClusterError):
    """409 Conflict: the object changed since the resourceVersion the write carried."""


@dataclass(frozen=True)
class Scale:
    """A target's autoscaling/v1 Scale, as read from its /scale subresource."""

    replicas: int
    """spec.replicas: what the target is asked to run."""
    status_replicas: int
    """status.replicas: what it runs now (ready or not)."""
    selector: str
    """status.selector: the label selector of its pods, as a string."""
    resource_version: str
    """For an optimistic write of exactly this state."""


@dataclass(frozen=True)
class User:
    """A caller as a TokenReview identified it (authentication.k8s.io/v1 UserInfo)."""

    name: str
    """The user name, e.g. system:serviceaccount:monitoring:prometheus."""
    uid: str = ""
    """A unique id of the user, when the authenticator gives one."""
    groups: tuple[str, ...] = ()
    """The groups the user belongs to, e.g. system:serviceaccounts."""
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Whatever else the authenticator knows (e.g. the pod a token is bound to); the
    SubjectAccessReview passes it on, as authorizers may decide on it."""


@dataclass(frozen=True)
class Access:
    """A SubjectAccessReview's answer."""

    allowed: bool
    """True only when an authorizer allowed the request (no opinion is not allowed)."""
    reason: str = ""
    """Why, as the authorizer put it (may be empty), for the log."""


class Cluster:
    """Async access to the API server for the control loop."""

    def __init__(self, api: ApiClient | None = None, *, conflict_retries: int = 5,
                 timeout: float = 10.0, workers: int = 8) -> None:
        """`api`: a configured ApiClient; by default one is built on first use from the
        in-cluster service account, else from KUBECONFIG/~/.kube/config.
        `conflict_retries`: re-reads after a 409 on /scale before giving up.
        `timeout`: seconds per API call. `workers`: threads doing API calls."""
        self._api = api
        self.conflict_retries = conflict_retries
        self.timeout = timeout
        self._workers = workers
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, "kubernetes")
        self._plurals: dict[tuple[str, str], str] = {}
        self._instance = socket.gethostname()

    # ---- the target's /scale -------------------------------------------------------------

    async def read_scale(self, namespace: str, ref: ScaleTargetRef) -> Scale:
        """The target's Scale; TargetNotFound if it (or its kind, or its /scale) is missing."""
        path = await self._scale_path(namespace, ref)
        return _scale(await self._call(self._request, "GET", path, None, None, ref))

    async def patch_scale(self, namespace: str, ref: ScaleTargetRef, replicas: int) -> Scale:
        """Set spec.replicas through /scale, re-reading and retrying on 409 Conflict."""
        path = await self._scale_path(namespace, ref)
        for attempt in range(self.conflict_retries + 1):
            current = _scale(await self._call(self._request, "GET", path, None, None, ref))
            patch = {"metadata": {"resourceVersion": current.resource_version},
                     "spec": {"replicas": int(replicas)}}
            try:
                return _scale(await self._call(self._request, "PATCH", path, patch,
                                               _MERGE_PATCH, ref))
            except ClusterError as exc:
                if exc.status != 409 or attempt == self.conflict_retries:
                    raise
                logger.info("scaling %s/%s conflicted (attempt %d); re-reading", ref.kind,
                            ref.name, attempt + 1)
                # Jittered backoff, so two writers do not collide in lockstep.
                await asyncio.sleep(random.uniform(0.5, 1.0) * 0.05 * 2**attempt)
        raise AssertionError("unreachable: the last attempt returns or raises")

    # ---- the policy ------------------------------------------------------------------------

    async def read_policy(self, namespace: str, name: str) -> Body:
        """A ScalingPolicy as stored now (spec, status and resourceVersion)."""
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"
        result: Body = await self._call(self._request, "GET", path, None, None, None)
        return result

    async def patch_policy_status(self, namespace: str, name: str, status: Mapping[str, Any],
                                  resource_version: str | None = None) -> Body:
        """Merge-patch a ScalingPolicy's status subresource; returns the patched object.

        With `resource_version`, the write lands only on exactly that version of the policy
        and raises Conflict otherwise (another writer came in between)."""
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}/status"
        patch: Body = {"status": dict(status)}
        if resource_version:
            patch["metadata"] = {"resourceVersion": resource_version}
        result: Body = await self._call(self._request, "PATCH", path, patch, _MERGE_PATCH, None)
        return result

    async def post_event(self, body: Mapping[str, Any], *, reason: str, message: str,
                         warning: bool = False) -> None:
        """Post a core/v1 Event about `body` (a policy); a failure is logged, never raised,
        because Events are for people and must not stop the loop."""
        meta = body.get("metadata", {})
        namespace = meta.get("namespace") or "default"
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name', 'foreseer')}.",
                         "namespace": namespace},
            "involvedObject": {"apiVersion": body.get("apiVersion", f"{GROUP}/{VERSION}"),
                               "kind": body.get("kind", "ScalingPolicy"),
                               "name": meta.get("name"), "namespace": namespace,
                               "uid": meta.get("uid"),
                               "resourceVersion": meta.get("resourceVersion")},
            "type": "Warning" if warning else "Normal", "reason": reason,
            "message": message[:1024], "count": 1,
            "firstTimestamp": now, "lastTimestamp": now,
            "source": {"component": REPORTING_COMPONENT},
            "reportingComponent": REPORTING_COMPONENT, "reportingInstance": self._instance,
        }
        try:
            await self._call(self._request, "POST", f"/api/v1/namespaces/{namespace}/events",
                             event, "application/json", None)
        except ClusterError as exc:
            logger.warning("could not post the event %s (%s): %s", reason, message, exc)

    # ---- reviews of a caller's credentials (/metrics authn and authz) --------------------

    async def review_token(self, token: str) -> User | None:
        """Who the API server says a bearer token belongs to (a TokenReview), or None when it
        does not authenticate the token; ClusterError when the review itself failed."""
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                  "spec": {"token": token}}
        result = await self._call(self._request, "POST",
                                  "/apis/authentication.k8s.io/v1/tokenreviews", review,
                                  "application/json", None)
        status = result.get("status") or {}
        if status.get("authenticated") is not True:
            return None
        try:
            user = status.get("user") or {}
            extra = user.get("extra") or {}
            return User(name=str(user.get("username", "")), uid=str(user.get("uid", "")),
                        groups=tuple(str(g) for g in user.get("groups") or ()),
                        extra={str(k): tuple(str(v) for v in values or ())
                               for k, values in extra.items()})
        except (AttributeError, TypeError) as exc:  # not a UserInfo: no answer to trust
            raise ClusterError(f"the TokenReview's answer is not a UserInfo: {exc}") from exc

    async def review_access(self, user: User, path: str, verb: str) -> Access:
        """Whether RBAC (or whichever authorizer the API server runs) lets `user` do `verb` on
        the non-resource URL `path` (a SubjectAccessReview); ClusterError when the review
        itself failed."""
        spec: Body = {"user": user.name, "groups": list(user.groups),
                      "nonResourceAttributes": {"path": path, "verb": verb}}
        # Empty fields are left out, as Go's omitempty leaves them out of what
        # kube-rbac-proxy and controller-runtime send.
        if user.uid:
            spec["uid"] = user.uid
        if user.extra:
            spec["extra"] = {key: list(values) for key, values in user.extra.items()}
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                  "spec": spec}
        result = await self._call(self._request, "POST",
                                  "/apis/authorization.k8s.io/v1/subjectaccessreviews", review,
                                  "application/json", None)
        status = result.get("status")
        if not isinstance(status, dict):
            raise ClusterError("the SubjectAccessReview's answer has no status")
        return Access(allowed=status.get("allowed") is True,
                      reason=str(status.get("reason") or status.get("evaluationError") or ""))

    # ---- pods, for readiness lead time -------------------------------------------------------

    async def list_pods(self, namespace: str, selector: str) -> list[Body]:
        """The target's pods (Pod objects as dicts, with status.conditions) by label selector.

        An empty selector would select every pod of the namespace, so it selects none.
        """
        if not selector:
            return []
        path = f"/api/v1/namespaces/{namespace}/pods"
        # resourceVersion=0 lets the API server answer from its watch cache instead of etcd:
        # the lead time does not need the very latest pod, and this runs every tick.
        result = await self._call(self._request, "GET", path, None, None, None,
                                  {"labelSelector": selector, "resourceVersion": "0"})
        return list(result.get("items", []))

    # ---- other autoscalers, so that two never scale one target ---------------------------------

    async def list_autoscaled(self, namespace: str) -> list[tuple[str, str, str, str]]:
        """The targets of the namespace's HorizontalPodAutoscalers (KEDA's ScaledObjects each
        make one), as (apiVersion, kind, name, the HPA's name)."""
        path = f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers"
        # From the watch cache, as the pods: an HPA created a moment ago is seen next time.
        result = await self._call(self._request, "GET", path, None, None, None,
                                  {"resourceVersion": "0"})
        targets = []
        for hpa in result.get("items", []):
            ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
            targets.append((str(ref.get("apiVersion", "")), str(ref.get("kind", "")),
                            str(ref.get("name", "")),
                            str((hpa.get("metadata") or {}).get("name", ""))))
        return targets

    # ---- coordination.k8s.io Leases, for sharding ---------------------------------------------

    async def list_leases(self, namespace: str, selector: str) -> list[Body]:
        """The Leases of ``namespace`` that match the label ``selector``, as stored now (not
        from the watch cache: who holds a shard must be read fresh)."""
        result = await self._call(self._request, "GET", _leases(namespace), None, None, None,
                                  {"labelSelector": selector})
        return list(result.get("items", []))

    async def create_lease(self, namespace: str, body: Mapping[str, Any]) -> Body:
        """Create a Lease; Conflict when one of that name exists (another replica was first)."""
        result: Body = await self._call(self._request, "POST", _leases(namespace), dict(body),
                                        "application/json", None)
        return result

    async def replace_lease(self, namespace: str, body: Mapping[str, Any]) -> Body:
        """Replace a Lease with ``body``, which carries the resourceVersion it was read at;
        Conflict when it changed since (another replica wrote it first)."""
        path = f"{_leases(namespace)}/{body['metadata']['name']}"
        result: Body = await self._call(self._request, "PUT", path, dict(body),
                                        "application/json", None)
        return result

    async def delete_lease(self, namespace: str, name: str) -> None:
        """Delete a Lease; one already gone is no error."""
        try:
            await self._call(self._request, "DELETE", f"{_leases(namespace)}/{name}", None,
                             None, None)
        except ClusterError as exc:
            if exc.status != 404:
                raise

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        api: Any = self._api  # the client's methods are untyped
        if api is not None:
            api.close()

    # ---- plumbing ----------------------------------------------------------------------------

    async def _scale_path(self, namespace: str, ref: ScaleTargetRef) -> str:
        plural = self._plurals.get((ref.api_version, ref.kind))
        if plural is None:  # discovery only once per kind, off the loop
            plural = await self._call(self._plural, ref)
        prefix = "/api/v1" if ref.api_version == "v1" else f"/apis/{ref.api_version}"
        return f"{prefix}/namespaces/{namespace}/{plural}/{ref.name}/scale"

    def _plural(self, ref: ScaleTargetRef) -> str:
        """The resource name of a kind, from API discovery (cached), checking it has /scale."""
        key = (ref.api_version, ref.kind)
        if key not in self._plurals:
            prefix = "/api/v1" if ref.api_version == "v1" else f"/apis/{ref.api_version}"
            try:
                listing = self._request("GET", prefix, None, None, None)
            except ClusterError as exc:
                if exc.status == 404:
                    raise TargetNotFound(f"the API {ref.api_version} is not served", 404) from exc
                raise
            names = {r["name"] for r in listing.get("resources", [])}
            plural = next((r["name"] for r in listing.get("resources", [])
                           if r.get("kind") == ref.kind and "/" not in r["name"]), None)
            if plural is None:
                raise TargetNotFound(f"there is no kind {ref.kind} in {ref.api_version}", 404)
            if f"{plural}/scale" not in names:
                raise TargetNotFound(f"{ref.kind} ({ref.api_version}) has no /scale "
                                     "subresource, so it cannot be scaled", 404)
            self._plurals[key] = plural
        return self._plurals[key]

    def _client(self) -> ApiClient:
        if self._api is None:
            config = Configuration()
            loaders: Any = kubernetes.config  # untyped functions
            try:
                loaders.load_incluster_config(client_configuration=config)
            except ConfigException:
                # The client reads KUBECONFIG once, at import; read it now instead.
                try:
                    loaders.load_kube_config(
                        config_file=os.environ.get("KUBECONFIG"), client_configuration=config)
                except (ConfigException, OSError) as exc:
                    raise ClusterError("no Kubernetes credentials: not in a cluster, and no "
                                       f"usable KUBECONFIG or ~/.kube/config ({exc})") from exc
            config.connection_pool_maxsize = self._workers
            self._api = ApiClient(config)
        return self._api

    def _request(self, method: str, path: str, body: Any, content_type: str | None,
                 ref: ScaleTargetRef | None, query: Mapping[str, str] | None = None) -> Body:
        """One blocking API call; a non-2xx answer becomes a ClusterError with the API's
        message (TargetNotFound for a missing `ref` target). A body that is not strict JSON
        (NaN, ±Infinity) raises ValueError and is never sent."""
        if body is not None:
            # The client serialises with Python's json, which writes NaN and Infinity; a real
            # API server refuses them (400), so such a body is a bug to surface here, loudly.
            try:
                json.dumps(body, allow_nan=False)
            except ValueError as exc:
                raise ValueError(f"refusing to send {method} {path}: the body holds a number "
                                 f"JSON cannot carry ({exc})") from exc
        client = self._client()
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            method, url, headers, body, _ = client.param_serialize(
                method, path, query_params=list((query or {}).items()) or None,
                header_params=headers, body=body, auth_settings=["BearerToken"])
            response: Any = client.call_api(method, url, header_params=headers, body=body,
                                            _request_timeout=self.timeout)
            data = response.read()
        except Exception as exc:  # urllib3 and the client raise many kinds; all mean "no answer"
            raise ClusterError(f"the API server did not answer {method} {path}: {exc}") from exc
        try:
            payload = json.loads(data) if data else {}
        except ValueError:
            payload = {"message": data[:200].decode(errors="replace")}
        if 200 <= response.status < 300:
            return dict(payload)
        message = payload.get("message") or response.reason or f"HTTP {response.status}"
        if response.status == 404 and ref is not None:
            raise TargetNotFound(f"{ref.kind}/{ref.name} not found: {message}", 404)
        if response.status == 409:
            raise Conflict(f"{method} {path} conflicted: {message}", 409)
        raise ClusterError(f"{method} {path} failed with {response.status}: {message}",
                           response.status)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args))


def _leases(namespace: str) -> str:
    return f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"


def _scale(body: Mapping[str, Any]) -> Scale:
    spec, status = body.get("spec") or {}, body.get("status") or {}
    return Scale(replicas=int(spec.get("replicas", 0)),
                 status_replicas=int(status.get("replicas", 0)),
                 selector=str(status.get("selector", "")),
                 resource_version=str(body.get("metadata", {}).get("resourceVersion", "")))
