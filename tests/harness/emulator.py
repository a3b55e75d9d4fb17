"""kmock's KubernetesEmulator, made realistic where foreseer and Kopf depend on API semantics.

The stock emulator (kmock 0.8) is an in-memory dict store: it sets no resourceVersion, uid or
generation, ignores generateName, merges /status and /scale into the object, returns the whole
Deployment from /scale, never answers 409, and crashes on ``GET /api/v1/namespaces``. An
autoscaler that is only tested against that would never see the failures it must survive, so
`Emulator` serves every object request itself (discovery and non-object paths stay kmock's):

- ``metadata.resourceVersion`` from one cluster-wide counter, changed on every write; ``uid``;
  ``creationTimestamp``; ``generation`` bumped only when something besides metadata/status changes.
- ``/status`` and ``/scale`` are real subresources: a status write changes only ``.status``, a
  main-resource write never changes ``.status``; ``/scale`` is an ``autoscaling/v1`` Scale whose
  writes change only ``spec.replicas`` of the target.
- ``metadata.generateName`` for any resource (Kopf posts Events that way).
- 409 Conflict when a write carries a stale ``metadata.resourceVersion``; 422 when a JSON-patch
  ``test`` op fails (Kopf's optimistic finalizer patches rely on it); 409 AlreadyExists; 404.
- 415 for strategic-merge patches of custom resources, like a real API server (the `kubernetes`
  client sends strategic-merge by default, which a real cluster rejects for CRDs).
- finalizers: DELETE only marks ``deletionTimestamp`` until the finalizers are gone.
- list ``metadata.resourceVersion``, ``labelSelector`` and ``fieldSelector`` (equality forms).
- watches resume from ``?resourceVersion=`` (or answer 410 Gone when it is too old), honour
  ``timeoutSeconds`` and ``sendInitialEvents``, and end when the emulator stops.
- ``/api/v1/namespaces``: namespaces are created on first use, as they would exist in a cluster.
- `Emulator.fail_next` injects faults (e.g. the next 2 PATCHes of /scale get 409).

It also refuses what a real API server refuses and a lenient store would keep:

- a body that is not strict JSON (``NaN``, ``Infinity``: Python's json writes them) gets
  400 BadRequest, as kube-apiserver's decoder answers;
- a create or write of a custom resource whose ``.spec`` (on the main resource) or
  ``.status`` (on ``/status``) breaks the CRD's structural schema (types, enums, bounds)
  gets 422 Invalid; CEL rules are not evaluated (tests/api checks those against the CRD);
- an unknown field (outside ``x-kubernetes-preserve-unknown-fields``) gets 400 BadRequest
  with ``?fieldValidation=Strict`` (kubectl's default), and is pruned otherwise, as a real
  server prunes it.

Use it through `serving()`, which also closes the watch streams before the HTTP server stops
(aiohttp would otherwise wait a minute per open stream)::

    async with serving() as emulator:
        emulator.write_kubeconfig(tmp_path / "kubeconfig")
        await emulator.create_object(DEPLOYMENTS, deployment("web", "ns", replicas=2))
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import datetime
import itertools
import json
import pathlib
import random
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import jsonschema
import kmock
import yaml
from api.crd_validation import as_json_schema
from kmock._internal import apps, dicts, rendering

Body = dict[str, Any]
Key = tuple[kmock.resource, str | None, str]

DEPLOYMENTS = kmock.resource("apps", "v1", "deployments")
PODS = kmock.resource("", "v1", "pods")
EVENTS = kmock.resource("", "v1", "events")
NAMESPACES = kmock.resource("", "v1", "namespaces")
CRDS = kmock.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")

# kmock's URL parser raises on a bare /api/v1/namespaces (it expects a namespace name after it),
# so namespace requests are recognised here, before kmock parses anything.
_NAMESPACE_PATH = re.compile(r"/api/v1/namespaces(?:/([^/]+)(?:/(status|finalize))?)?/?")
# The alphabet and length the API server uses for generateName suffixes (no vowels: no words).
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_MERGE_TYPES = {"application/merge-patch+json", "application/json"}
_STRATEGIC = "application/strategic-merge-patch+json"
_JSON_PATCH = "application/json-patch+json"


@attrs.frozen
class ApiError(kmock.KubernetesError):
    """A Kubernetes Status error with the reason string a real API server uses."""


def _not_found(resource: kmock.resource, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{_qualified(resource)} "{name}" not found',
                    {"name": name, "group": resource.group, "kind": resource.plural})


def _conflict(resource: kmock.resource, name: str) -> ApiError:
    return ApiError(
        409, "Conflict",
        f'Operation cannot be fulfilled on {_qualified(resource)} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        {"name": name, "group": resource.group, "kind": resource.plural})


def _invalid(resource: kmock.resource, name: str, message: str) -> ApiError:
    return ApiError(422, "Invalid", f'{_qualified(resource)} "{name}" is invalid: {message}',
                    {"name": name, "group": resource.group, "kind": resource.plural})


def _qualified(resource: kmock.resource) -> str:
    return f"{resource.plural}.{resource.group}" if resource.group else str(resource.plural)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@attrs.define
class Fault:
    """An injected fault: the next `times` matching requests get `status` and change nothing,
    or, with a `hook`, are served normally right after the hook ran (an interleaved writer)."""

    method: str
    resource: kmock.resource
    subresource: str | None
    name: str | None
    times: int
    status: int
    hook: Callable[[], Awaitable[Any]] | None = None
    hits: int = 0
    """How many requests this fault has hit so far (for assertions)."""

    def matches(self, request: rendering.Request) -> bool:
        return (
            self.hits < self.times
            and request.method.value == self.method
            and request.resource == self.resource
            and request.subresource == self.subresource
            and (self.name is None or request.name == self.name)
        )


@attrs.define(eq=False)
class _Watcher:
    resource: kmock.resource
    namespace: str | None
    accepts: Callable[[Body], bool]
    queue: asyncio.Queue[Body | None] = attrs.field(factory=asyncio.Queue)

    def wants(self, body: Body) -> bool:
        namespace = body.get("metadata", {}).get("namespace")
        return (self.namespace is None or namespace == self.namespace) and self.accepts(body)


@attrs.define(kw_only=True)
class Emulator(kmock.KubernetesEmulator):
    """A KubernetesEmulator with real API semantics for objects (see the module docstring).

    Objects stay visible to assertions through kmock's ``emulator.objects[resource, ns, name]``
    (with their version history); `get` returns the current body as a plain dict.
    """

    history_limit: int = 100
    """Versions kept per object in ``objects[...].history``; bounds memory in long benchmarks."""
    request_log_limit: int = 10_000
    """Requests kept in ``emulator.requests`` for assertions; bounds memory likewise."""
    watch_log_limit: int = 10_000
    """Events kept per resource for watches that resume from a resourceVersion (older: 410)."""

    _counter: Callable[[], int] = attrs.field(factory=lambda: itertools.count(1).__next__,
                                              init=False)
    _revision: int = attrs.field(default=0, init=False)
    _log: dict[kmock.resource, collections.deque[tuple[int, Body]]] = attrs.field(
        factory=dict, init=False)
    _watchers: set[_Watcher] = attrs.field(factory=set, init=False)
    _faults: list[Fault] = attrs.field(factory=list, init=False)
    _custom: set[kmock.resource] = attrs.field(factory=set, init=False)
    _scale_paths: dict[kmock.resource, tuple[str, str, str | None]] = attrs.field(
        factory=dict, init=False)
    _columns: dict[kmock.resource, list[Body]] = attrs.field(factory=dict, init=False)
    _schemas: dict[kmock.resource, Body] = attrs.field(factory=dict, init=False)
    _closing: bool = attrs.field(default=False, init=False)
    # The current body of every live object, by resource: kmock's store keeps each object's
    # whole version history behind views that are slow to walk, and a list or watch would
    # otherwise scan every object of every resource (thousands of Events in a benchmark).
    _live: dict[kmock.resource, dict[tuple[str | None, str], Body]] = attrs.field(
        factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # Builtin discovery (kinds, verbs, which resources have /status and /scale) from kmock's
        # bundled snapshot of a real cluster; Kopf needs namespaces, events and CRDs to start.
        self.resources.load_bundled()

    # ---- test-facing API ---------------------------------------------------------------------

    def install_crd(self, crd: Mapping[str, Any]) -> kmock.resource:
        """Serve a CustomResourceDefinition: discovery, subresources, and the CRD object."""
        spec = crd["spec"]
        group, names = spec["group"], spec["names"]
        served = [v for v in spec["versions"] if v.get("served", True)]
        resource = kmock.resource(group, served[0]["name"], names["plural"])
        for version in served:
            res = kmock.resource(group, version["name"], names["plural"])
            self.resources[res] = kmock.ResourceInfo(
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                kind=names["kind"], singular=names.get("singular", names["kind"].lower()),
                verbs={"get", "list", "watch", "create", "update", "patch", "delete",
                       "deletecollection"},
                shortnames=set(names.get("shortNames", [])),
                categories=set(names.get("categories", [])),
                subresources=set(version.get("subresources", {})),
            )
            self._custom.add(res)
            self._columns[res] = list(version.get("additionalPrinterColumns", []))
            self._schemas[res] = version.get("schema", {}).get("openAPIV3Schema", {})
            scale = version.get("subresources", {}).get("scale")
            if scale is not None:
                self._scale_paths[res] = (scale["specReplicasPath"], scale["statusReplicasPath"],
                                          scale.get("labelSelectorPath"))
        body = copy.deepcopy(dict(crd))
        self._store_new(CRDS, None, body)
        return resource

    def install_crd_file(self, path: str | pathlib.Path) -> list[kmock.resource]:
        """Install every CRD in a YAML file (e.g. ``crds/scalingpolicies.yaml``)."""
        docs = yaml.safe_load_all(pathlib.Path(path).read_text())
        return [self.install_crd(doc) for doc in docs
                if doc and doc.get("kind") == "CustomResourceDefinition"]

    def before_next(self, method: str, resource: kmock.resource | str,
                    hook: Callable[[], Awaitable[Any]], *, subresource: str | None = None,
                    name: str | None = None, times: int = 1) -> Fault:
        """Run `hook` just before the next `times` matching requests are served.

        ``emulator.before_next("PATCH", DEPLOYMENTS, bump, subresource="scale")`` lets another
        writer change the Deployment between a client's read and its write, so the write's
        resourceVersion is really stale and the 409 is the emulator's own.
        """
        fault = Fault(method.upper(), kmock.resource(resource), subresource, name, times, 0, hook)
        self._faults.append(fault)
        return fault

    def fail_next(self, method: str, resource: kmock.resource | str, *,
                  subresource: str | None = None, name: str | None = None, times: int = 1,
                  status: int = 409) -> Fault:
        """Fail the next `times` matching requests with `status` (409 by default), changing nothing.

        ``emulator.fail_next("PATCH", DEPLOYMENTS, subresource="scale", times=2)`` makes the next
        two scale patches conflict, as when another controller wrote in between.
        """
        fault = Fault(method.upper(), kmock.resource(resource), subresource, name, times, status)
        self._faults.append(fault)
        return fault

    async def create_object(self, resource: kmock.resource | str, body: Mapping[str, Any],
                     namespace: str | None = None) -> Body:
        """Create an object as a POST would (stamped metadata, watch event); returns it."""
        resource = kmock.resource(resource)
        if resource not in self.resources:
            raise ValueError(f"unknown resource {resource}; install its CRD first")
        namespace = namespace or body.get("metadata", {}).get("namespace")
        async with self._lock:
            return copy.deepcopy(self._create(resource, namespace, copy.deepcopy(dict(body)),
                                              keep_status=True))

    async def patch_object(self, resource: kmock.resource | str, namespace: str | None, name: str,
                    patch: Mapping[str, Any], subresource: str | None = None) -> Body:
        """Merge-patch an object (or its /status or /scale) as a client would; returns it."""
        resource = kmock.resource(resource)
        async with self._lock:
            return copy.deepcopy(self._write(resource, namespace, name, subresource, "PATCH",
                                             "application/merge-patch+json", dict(patch)))

    async def delete_object(self, resource: kmock.resource | str, namespace: str | None,
                     name: str) -> None:
        """Delete an object as a DELETE would (finalizers respected)."""
        resource = kmock.resource(resource)
        async with self._lock:
            self._delete(resource, namespace, name)

    def read_object(self, resource: kmock.resource | str, namespace: str | None,
                    name: str) -> Body | None:
        """The current body of an object as a plain dict, or None when it does not exist."""
        obj = self._objects_get((kmock.resource(resource), namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def list_objects(self, resource: kmock.resource | str,
                     namespace: str | None = None) -> list[Body]:
        """Current bodies of a resource (all namespaces when `namespace` is None)."""
        resource = kmock.resource(resource)
        return [copy.deepcopy(body) for (ns, _), body in self._current(resource)
                if namespace is None or ns == namespace]

    def count_objects(self, resource: kmock.resource | str,
                      where: Callable[[Body], bool] = lambda _: True) -> int:
        """How many current objects of a resource satisfy `where` (no copies: cheap to poll;
        `where` must not change the body)."""
        return sum(1 for _, body in self._current(kmock.resource(resource)) if where(body))

    def subscribe(self, resource: kmock.resource | str) -> asyncio.Queue[Body | None]:
        """A queue of watch events ({"type", "object"}) of a resource, for in-process code."""
        watcher = _Watcher(kmock.resource(resource), None, lambda _: True)
        self._watchers.add(watcher)
        return watcher.queue

    def unsubscribe(self, queue: asyncio.Queue[Body | None]) -> None:
        self._watchers = {w for w in self._watchers if w.queue is not queue}

    def write_kubeconfig(self, path: str | pathlib.Path,
                         namespace: str = "default") -> pathlib.Path:
        """Write a kubeconfig pointing at this emulator, for Kopf, kubectl and the client."""
        path = pathlib.Path(path)
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
            "clusters": [{"name": "emulator", "cluster": {"server": str(self.url).rstrip("/")}}],
            "users": [{"name": "emulator", "user": {"token": "emulator-token"}}],
            "contexts": [{"name": "emulator", "context": {
                "cluster": "emulator", "user": "emulator", "namespace": namespace}}],
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def close_watches(self) -> None:
        """End every open watch stream, as an API server does on shutdown."""
        self._closing = True
        for watcher in self._watchers:
            watcher.queue.put_nowait(None)

    # ---- HTTP entry points ------------------------------------------------------------------

    async def _serve_version(self, request: rendering.Request) -> rendering.Payload:
        """kmock's APIResourceList as a real server writes it, so kubectl can map names: the
        core groupVersion is "v1" (not "/v1"), and subresources have no short names or
        categories of their own, the verbs they serve, and Scale as the kind of /scale."""
        listing: Any = await super()._serve_version(request)
        listing["groupVersion"] = listing["groupVersion"].lstrip("/")  # the core group is "v1"
        for entry in listing["resources"]:
            if "/" in entry["name"]:
                scale = entry["name"].endswith("/scale")
                entry.update(shortNames=[], categories=[], singularName="",
                             verbs=["get", "patch", "update"],
                             kind="Scale" if scale else entry["kind"])
                if scale:
                    entry.update(group="autoscaling", version="v1")
        return listing  # type: ignore[no-any-return]

    async def __call__(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        refusal = _not_strict_json(await raw.read())  # aiohttp keeps the body for kmock
        if refusal is not None:
            return _status_response(ApiError(400, "BadRequest", refusal))
        match = _NAMESPACE_PATH.fullmatch(raw.path)
        if match is None:
            response = await super().__call__(raw)
            # kmock records every request; a long benchmark must not keep them all.
            if len(self._requests) > self.request_log_limit:
                del self._requests[: len(self._requests) - self.request_log_limit]
            return response
        body = await raw.read()
        request = rendering.Request(
            method=raw.method, url=raw.url, params=dict(raw.query), headers=dict(raw.headers),
            body=body, data=json.loads(body) if body else None, raw_request=raw,
            action=kmock.action.WATCH if raw.query.get("watch") == "true" else None,
            resource=NAMESPACES, namespace=None, name=match[1], subresource=match[2])
        return await self._handle(request)

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        resource = request.resource
        if resource is None or resource.plural is None:
            return await apps.RawHandler._handle(self, request)  # discovery & custom reactions
        try:
            for fault in self._faults:
                if fault.matches(request):
                    fault.hits += 1
                    if fault.hook is None:
                        raise ApiError(fault.status, "Injected", f"injected fault {fault.status}")
                    await fault.hook()
            if request.method.value == "GET" and request.params.get("watch") in ("true", "1"):
                return await self._watch(request)
            result = await self._serve(request)
        except kmock.KubernetesError as exc:
            return _status_response(exc)
        created = request.method.value == "POST"
        return aiohttp.web.json_response(result, status=201 if created else 200)

    async def _serve(self, request: rendering.Request) -> Body:
        resource, name, sub = request.resource, request.name, request.subresource
        assert resource is not None
        if resource not in self.resources:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource "
                                            f"({_qualified(resource)})")
        method = request.method.value
        namespace = request.namespace
        content_type = request.headers.get("Content-Type", "application/json").split(";")[0]
        # kubectl asks for a server-side Table to print a CRD's additionalPrinterColumns.
        as_table = "as=Table" in request.headers.get("Accept", "") and resource in self._columns
        async with self._lock:
            if method == "GET" and name is None:
                listing = self._list(resource, namespace, request.params)
                return self._table(resource, listing["items"]) if as_table else listing
            if method == "GET":
                body = self._read(resource, namespace, name, sub)
                return self._table(resource, [body]) if as_table and sub is None else body
            strict = request.params.get("fieldValidation") == "Strict"
            if method == "POST" and name is None:
                return self._create(resource, namespace, dict(request.data or {}),
                                    strict=strict, checked=True)
            if method in ("PATCH", "PUT") and name is not None:
                return self._write(resource, namespace, name, sub, method, content_type,
                                   request.data, strict)
            if method == "DELETE" and name is not None and sub is None:
                return self._delete(resource, namespace, name)
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on {request.url.path}")

    # ---- object semantics (called with the lock held) ----------------------------------------

    def _read(self, resource: kmock.resource, namespace: str | None, name: str,
              sub: str | None) -> Body:
        body = self._require(resource, namespace, name)
        if sub is None or (sub == "status" and self._has_sub(resource, "status")):
            return body
        if sub == "scale" and self._has_sub(resource, "scale"):
            return self._scale_of(resource, body)
        raise _not_found(resource, f"{name}/{sub}")

    def _create(self, resource: kmock.resource, namespace: str | None, body: Body,
                keep_status: bool = False, strict: bool = False, checked: bool = False) -> Body:
        meta = body.setdefault("metadata", {})
        if self.resources[resource].namespaced:
            namespace = namespace or meta.get("namespace") or "default"
            meta["namespace"] = namespace
            self._ensure_namespace(namespace)
        else:
            namespace = None
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise _invalid(resource, "", "metadata.name: Required value: name or "
                                             "generateName is required")
            meta["name"] = self._generate_name(resource, namespace, meta["generateName"])
        name = meta["name"]
        existing = self._objects_get((resource, namespace, name))
        if existing is not None:
            raise ApiError(409, "AlreadyExists", f'{_qualified(resource)} "{name}" already exists',
                           {"name": name, "group": resource.group, "kind": resource.plural})
        # A real server drops .status on create where status is a subresource; `create()` from a
        # test may seed it (e.g. a Deployment that is already ready).
        if not keep_status and self._has_sub(resource, "status"):
            body.pop("status", None)
        info = self.resources[resource]
        body.setdefault("apiVersion", f"{resource.group}/{resource.version}".lstrip("/"))
        body.setdefault("kind", info.kind)
        for field in ("resourceVersion", "deletionTimestamp"):
            meta.pop(field, None)
        _apply_defaults(body, self._schemas.get(resource, {}))
        if checked:  # a request from a client; a test's own create() may seed anything
            self._check_part(resource, name, body, "spec", strict)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
        return self._store_new(resource, namespace, body)

    def _write(self, resource: kmock.resource, namespace: str | None, name: str, sub: str | None,
               method: str, content_type: str, data: Any, strict: bool = False) -> Body:
        current = self._require(resource, namespace, name)
        if sub == "scale" and self._has_sub(resource, "scale"):
            return self._write_scale(resource, current, method, content_type, data)
        if sub not in (None, "status") or (sub == "status"
                                           and not self._has_sub(resource, "status")):
            raise _not_found(resource, f"{name}/{sub}")
        proposed = self._apply(resource, current, method, content_type, data)
        if self._has_sub(resource, "status"):
            # A status write may change only .status; any other write never changes .status.
            keep_from, take_from = (current, proposed) if sub == "status" else (proposed, current)
            merged = copy.deepcopy(keep_from)
            merged.pop("status", None)
            if "status" in take_from:
                merged["status"] = take_from["status"]
            if sub == "status":
                merged["metadata"] = copy.deepcopy(current["metadata"])
            proposed = merged
        if sub == "status" or not self._has_sub(resource, "status"):
            self._check_part(resource, name, proposed, "status", strict)
        if sub is None:
            self._check_part(resource, name, proposed, "spec", strict)
        return self._store_update(resource, current, proposed)

    def _check_part(self, resource: kmock.resource, name: str, body: Body, part: str,
                    strict: bool) -> None:
        """Hold ``body[part]`` to the CRD's structural schema, as a real server: unknown
        fields are a 400 when `strict`, else pruned; any other violation is a 422."""
        schema = self._schemas.get(resource, {}).get("properties", {}).get(part)
        if schema is None or part not in body:
            return
        validator = jsonschema.Draft4Validator(as_json_schema(schema))
        unknown = [e for e in validator.iter_errors(body[part])
                   if e.validator == "additionalProperties"]
        for error in unknown:
            extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
            where = ".".join([part, *(str(p) for p in error.absolute_path)])
            if strict:
                raise ApiError(400, "BadRequest", f'strict decoding error: unknown field '
                                                  f'"{where}.{extra[0]}"')
            for key in extra:
                error.instance.pop(key, None)
        errors = sorted(validator.iter_errors(body[part]), key=lambda e: list(e.absolute_path))
        if errors:
            raise _invalid(resource, name, "; ".join(
                f"{'.'.join([part, *(str(p) for p in e.absolute_path)])}: {e.message}"
                for e in errors[:5]))

    def _write_scale(self, resource: kmock.resource, current: Body, method: str,
                     content_type: str, data: Any) -> Body:
        scale = self._scale_of(resource, current)
        proposed = self._apply(resource, scale, method, content_type, data)
        replicas = proposed.get("spec", {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise _invalid(resource, current["metadata"]["name"],
                           f"spec.replicas: Invalid value: {replicas!r}: "
                           "must be a non-negative integer")
        updated = copy.deepcopy(current)
        spec_path = self._scale_paths.get(resource, (".spec.replicas",))[0]
        *parents, leaf = spec_path.strip(".").split(".")
        target = updated
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = replicas
        return self._scale_of(resource, self._store_update(resource, current, updated))

    def _apply(self, resource: kmock.resource, current: Body, method: str, content_type: str,
               data: Any) -> Body:
        """The body a write proposes, after the optimistic-concurrency check."""
        name = current["metadata"]["name"]
        if method == "PUT":
            if not isinstance(data, dict):
                raise _invalid(resource, name, "the body must be an object")
            proposed = copy.deepcopy(data)
        elif content_type == _JSON_PATCH:
            if not isinstance(data, list):
                raise ApiError(400, "BadRequest", "a JSON patch must be a list of operations")
            try:
                proposed = jsonpatch.apply_patch(current, data, in_place=False)
            except jsonpatch.JsonPatchTestFailed as exc:
                raise _invalid(resource, name, f"the test operation failed: {exc}") from exc
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                raise _invalid(resource, name, str(exc)) from exc
        elif content_type in _MERGE_TYPES or content_type == _STRATEGIC:
            if content_type == _STRATEGIC and resource in self._custom:
                raise ApiError(415, "UnsupportedMediaType",
                               f"the body of the request was in an unknown format - accepted "
                               f"media types include: {', '.join(sorted(_MERGE_TYPES))}, "
                               f"{_JSON_PATCH}, application/apply-patch+yaml")
            if not isinstance(data, dict):
                raise ApiError(400, "BadRequest", "a merge patch must be an object")
            # Strategic merge is treated as a merge patch: right for every field foreseer writes.
            proposed = dict(dicts.merge_patch_dict(current, data))
        else:
            raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {content_type}")
        meta = (data.get("metadata") or {}) if isinstance(data, dict) else {}
        wanted = meta.get("resourceVersion")
        if wanted not in (None, "") and wanted != current["metadata"]["resourceVersion"]:
            raise _conflict(resource, name)
        return proposed

    def _delete(self, resource: kmock.resource, namespace: str | None, name: str) -> Body:
        current = self._require(resource, namespace, name)
        if current["metadata"].get("finalizers"):
            if current["metadata"].get("deletionTimestamp"):
                return current
            updated = copy.deepcopy(current)
            updated["metadata"]["deletionTimestamp"] = _now()
            return self._store_update(resource, current, updated, by_server=True)
        return self._remove(resource, namespace, name, current)

    # ---- storage, versions and watch events ---------------------------------------------------

    def _store_new(self, resource: kmock.resource, namespace: str | None, body: Body) -> Body:
        body["metadata"]["resourceVersion"] = self._next_version()
        key = (resource, namespace, body["metadata"]["name"])
        if key in self._objects:
            self._objects[key].create(body)
        else:
            self._objects[key] = body
        self._live.setdefault(resource, {})[namespace, body["metadata"]["name"]] = body
        self._publish(resource, "ADDED", body)
        return body

    def _store_update(self, resource: kmock.resource, current: Body, proposed: Body,
                      *, by_server: bool = False) -> Body:
        meta = proposed.setdefault("metadata", {})
        old_meta = current["metadata"]
        # Identity and server-owned fields cannot be changed by a client.
        for field in ("name", "namespace", "uid", "creationTimestamp", "generation",
                      "deletionTimestamp"):
            if by_server and field == "deletionTimestamp":
                continue
            if field in old_meta:
                meta[field] = old_meta[field]
            else:
                meta.pop(field, None)
        _apply_defaults(proposed, self._schemas.get(resource, {}))
        if _spec_part(proposed) != _spec_part(current):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        meta["resourceVersion"] = old_meta["resourceVersion"]
        if proposed == current:
            return current  # a no-op write does not bump resourceVersion, as on a real server
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self._remove(resource, meta.get("namespace"), meta["name"], proposed)
        meta["resourceVersion"] = self._next_version()
        obj = self._objects[resource, meta.get("namespace"), meta["name"]]
        obj.history.append(proposed)
        self._live[resource][meta.get("namespace"), meta["name"]] = proposed
        if len(obj.history) > self.history_limit:
            del obj.history[: len(obj.history) - self.history_limit]
        self._publish(resource, "MODIFIED", proposed)
        return proposed

    def _remove(self, resource: kmock.resource, namespace: str | None, name: str,
                last: Body) -> Body:
        gone = copy.deepcopy(last)
        gone["metadata"]["resourceVersion"] = self._next_version()
        self._objects[resource, namespace, name].delete()
        del self._live[resource][namespace, name]
        self._publish(resource, "DELETED", gone)
        return gone

    def _publish(self, resource: kmock.resource, kind: str, body: Body) -> None:
        event = {"type": kind, "object": copy.deepcopy(body)}
        log = self._log.setdefault(resource, collections.deque(maxlen=self.watch_log_limit))
        log.append((int(body["metadata"]["resourceVersion"]), event))
        for watcher in self._watchers:
            if watcher.resource == resource and watcher.wants(body):
                watcher.queue.put_nowait(event)

    def _next_version(self) -> str:
        self._revision = self._counter()
        return str(self._revision)

    def _objects_get(self, key: Key) -> Body | None:
        resource, namespace, name = key
        return self._live.get(resource, {}).get((namespace, name))

    def _current(self, resource: kmock.resource) -> list[tuple[tuple[str | None, str], Body]]:
        """((namespace, name), body) of every live object of `resource`."""
        return list(self._live.get(resource, {}).items())

    def _require(self, resource: kmock.resource, namespace: str | None, name: str) -> Body:
        if not self.resources[resource].namespaced:
            namespace = None
        body = self._objects_get((resource, namespace, name))
        if body is None:
            raise _not_found(resource, name)
        return body

    def _has_sub(self, resource: kmock.resource, sub: str) -> bool:
        return sub in self.resources[resource].subresources

    def _ensure_namespace(self, namespace: str) -> None:
        if self._objects_get((NAMESPACES, None, namespace)) is None:
            self._store_new(NAMESPACES, None, {
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": namespace, "uid": str(uuid.uuid4()),
                             "creationTimestamp": _now()},
                "status": {"phase": "Active"}})

    def _generate_name(self, resource: kmock.resource, namespace: str | None, prefix: str) -> str:
        while True:
            name = prefix + "".join(random.choices(_SUFFIX_ALPHABET, k=5))
            if self._objects_get((resource, namespace, name)) is None:
                return name

    def _scale_of(self, resource: kmock.resource, body: Body) -> Body:
        """The autoscaling/v1 Scale a real API server derives from a scalable object."""
        meta = body["metadata"]
        if resource in self._scale_paths:  # a CRD's scale subresource names its own fields
            spec_path, status_path, selector_path = self._scale_paths[resource]
            replicas, current = _at(body, spec_path), _at(body, status_path)
            selector = str(_at(body, selector_path) or "") if selector_path else ""
        else:  # the builtin workloads
            replicas = body.get("spec", {}).get("replicas", 1)
            current = body.get("status", {}).get("replicas")
            selector = format_selector(body.get("spec", {}).get("selector") or {})
        return {
            "apiVersion": "autoscaling/v1", "kind": "Scale",
            "metadata": {key: meta[key] for key in
                         ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                         if key in meta},
            "spec": {"replicas": int(replicas or 0)},
            "status": {"replicas": int(current or 0), "selector": selector},
        }

    def _table(self, resource: kmock.resource, items: list[Body]) -> Body:
        """A meta.k8s.io/v1 Table of a CRD's printer columns (dotted JSON paths only)."""
        columns = [{"name": "Name", "type": "string", "format": "name", "priority": 0,
                    "description": "Name of the object."}]
        columns += [{"name": c["name"], "type": c["type"], "format": c.get("format", ""),
                     "priority": c.get("priority", 0), "description": c.get("description", "")}
                    for c in self._columns[resource]]
        rows = [{"cells": [body["metadata"]["name"]]
                 + [_cell(_at(body, c["jsonPath"]), c["type"]) for c in self._columns[resource]],
                 "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                            "metadata": body["metadata"]}}
                for body in items]
        return {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
                "metadata": {"resourceVersion": str(self._revision)},
                "columnDefinitions": columns, "rows": rows}

    def _list(self, resource: kmock.resource, namespace: str | None,
              params: Mapping[str, str]) -> Body:
        accepts = _selector_filter(params)
        items = [body for (ns, _), body in self._current(resource)
                 if (namespace is None or ns == namespace) and accepts(body)]
        info = self.resources[resource]
        return {"apiVersion": f"{resource.group}/{resource.version}".lstrip("/"),
                "kind": f"{info.kind}List", "metadata": {"resourceVersion": str(self._revision)},
                "items": items}

    async def _watch(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        resource = request.resource
        assert resource is not None and request._raw_request is not None
        if resource not in self.resources:
            raise _not_found(resource, "")
        params = request.params
        watcher = _Watcher(resource, request.namespace, _selector_filter(params))
        since = params.get("resourceVersion") or "0"
        if not since.isdigit():
            raise ApiError(400, "BadRequest", f"invalid resourceVersion {since!r}")
        initial = params.get("sendInitialEvents") == "true"
        async with self._lock:
            backlog: list[Body] = []
            if since == "0" or initial:
                backlog = [{"type": "ADDED", "object": body} for _, body
                           in self._current(resource) if watcher.wants(body)]
                if initial:
                    backlog.append({"type": "BOOKMARK", "object": {"metadata": {
                        "resourceVersion": str(self._revision),
                        "annotations": {"k8s.io/initial-events-end": "true"}}}})
            else:
                log = self._log.get(resource, collections.deque())
                oldest = log[0][0] if log else self._revision + 1
                if int(since) < oldest - 1 and len(log) == log.maxlen:
                    backlog = [{"type": "ERROR", "object": {
                        "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410,
                        "reason": "Expired", "message": f"too old resource version: {since}"}}]
                else:
                    backlog = [event for rv, event in log
                           if rv > int(since) and watcher.wants(event["object"])]
            expired = bool(backlog) and backlog[-1]["type"] == "ERROR"
            if not self._closing and not expired:
                self._watchers.add(watcher)
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request._raw_request)
        timeout = float(params["timeoutSeconds"]) if params.get("timeoutSeconds") else None
        try:
            async with asyncio.timeout(timeout):
                for event in backlog:
                    await response.write(json.dumps(event).encode() + b"\n")
                while watcher in self._watchers:
                    event = await watcher.queue.get()
                    if event is None:
                        break
                    await response.write(json.dumps(event).encode() + b"\n")
        except (TimeoutError, ConnectionError):
            pass  # the server-side timeout, or the client went away
        finally:
            self._watchers.discard(watcher)
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"invalid character '{name[0]}' looking for beginning of value")


def _not_strict_json(body: bytes) -> str | None:
    """Why ``body`` is not strict JSON (NaN and ±Infinity are not JSON), or None."""
    if not body:
        return None
    try:
        json.loads(body, parse_constant=_refuse_constant)
    except ValueError as exc:
        return f"error decoding the body: {exc}"
    return None


def _status_response(exc: kmock.KubernetesError) -> aiohttp.web.Response:
    return aiohttp.web.json_response({
        "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
        "code": exc.status, "reason": exc.reason, "message": exc.message,
        "details": exc.details or {}}, status=exc.status)


def _at(body: Mapping[str, Any], path: str) -> Any:
    """The value at a CRD JSON path like ``.spec.replicas``, or None."""
    value: Any = body
    for part in path.strip(".").split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _apply_defaults(value: Any, schema: Mapping[str, Any]) -> None:
    """Fill in a CRD structural schema's ``default`` values, as the API server does."""
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                _apply_defaults(value[key], sub)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for item in value:
            _apply_defaults(item, schema["items"])


def _cell(value: Any, kind: str) -> Any:
    """A Table cell as the API server prints it: dates become an age like "5m" or "3d"."""
    if kind != "date" or not isinstance(value, str):
        return value
    born = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    seconds = int((datetime.datetime.now(datetime.UTC) - born).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "d" else 1):
            return f"{seconds // size}{unit}"
    return f"{max(0, seconds)}s"


def _spec_part(body: Mapping[str, Any]) -> dict[str, Any]:
    """Everything that bumps metadata.generation: all but metadata and status."""
    return {key: value for key, value in body.items() if key not in ("metadata", "status")}


def format_selector(selector: Mapping[str, Any]) -> str:
    """A LabelSelector as the string form the API uses in Scale.status.selector."""
    parts = [f"{key}={value}" for key, value in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], sorted(expr.get("values") or [])
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


_REQUIREMENT = re.compile(
    r"\s*(?:(?P<not>!)\s*(?P<nkey>[^\s,!=()]+)"
    r"|(?P<key>[^\s,!=()]+)\s*(?:(?P<op>==|=|!=)\s*(?P<value>[^\s,()]*)"
    r"|\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\))?)\s*(?:,|$)")


def parse_selector(text: str) -> Callable[[Mapping[str, str]], bool]:
    """A label (or field) selector string as a predicate on a flat label dict.

    Supports the whole selector grammar: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``,
    ``a notin (x)``, ``a`` (exists) and ``!a``. Raises ValueError on anything else.
    """
    checks: list[Callable[[Mapping[str, str]], bool]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _REQUIREMENT.match(text, pos)
        if match is None or match.end() == pos:
            raise ValueError(f"invalid selector {text!r} at position {pos}")
        pos = match.end()
        if match["not"]:
            checks.append(lambda labels, k=match["nkey"]: k not in labels)
        elif match["op"] in ("=", "=="):
            checks.append(lambda labels, k=match["key"], v=match["value"]: labels.get(k) == v)
        elif match["op"] == "!=":
            checks.append(lambda labels, k=match["key"], v=match["value"]: labels.get(k) != v)
        elif match["setop"]:
            values = {v.strip() for v in match["values"].split(",") if v.strip()}
            if match["setop"] == "in":
                checks.append(lambda labels, k=match["key"], vs=values: labels.get(k) in vs)
            else:
                checks.append(lambda labels, k=match["key"], vs=values: labels.get(k) not in vs)
        else:
            checks.append(lambda labels, k=match["key"]: k in labels)
    return lambda labels: all(check(labels) for check in checks)


def _selector_filter(params: Mapping[str, str]) -> Callable[[Body], bool]:
    try:
        by_labels = parse_selector(params.get("labelSelector", ""))
        by_fields = parse_selector(params.get("fieldSelector", ""))
    except ValueError as exc:
        raise ApiError(400, "BadRequest", str(exc)) from exc

    def accepts(body: Body) -> bool:
        return by_labels(body.get("metadata", {}).get("labels") or {}) and by_fields(
            _FieldView(body))
    return accepts


class _FieldView(Mapping[str, str]):
    """A body seen as ``{"metadata.name": ..., "involvedObject.kind": ...}`` for field selectors."""

    def __init__(self, body: Body) -> None:
        self._body = body

    def _lookup(self, path: str) -> str | None:
        value: Any = self._body
        for part in path.split("."):
            if not isinstance(value, dict) or part not in value:
                return None
            value = value[part]
        return None if isinstance(value, dict | list) else str(value)

    def __getitem__(self, key: str) -> str:
        value = self._lookup(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._lookup(key) is not None

    def __iter__(self) -> Any:
        return iter(())

    def __len__(self) -> int:
        return 0


@contextlib.asynccontextmanager
async def serving(emulator: Emulator | None = None) -> AsyncIterator[Emulator]:
    """Run an `Emulator` on a free loopback port; on exit, end its watches, then stop it."""
    emulator = Emulator() if emulator is None else emulator  # an idle one is falsy (no requests)
    async with emulator, kmock.Server(emulator):
        try:
            yield emulator
        finally:
            emulator.close_watches()
            await asyncio.sleep(0)  # let the stream handlers see the end-of-stream marker


def deployment(name: str, namespace: str, replicas: int = 1,
               labels: Mapping[str, str] | None = None) -> Body:
    """A minimal Deployment manifest whose pods are selected by ``app=<name>``."""
    labels = dict(labels or {"app": name})
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "app", "image": "app:1"}]}}},
    }


def scalingpolicy_crd() -> Body:
    """The ScalingPolicy CRD: the generated ``crds/`` manifest when present, else a minimal one.

    The minimal one carries only what the emulator serves (names, scope, the status
    subresource), so the harness works before ``make crds`` has been run.
    """
    from foreseer.operator import specs

    crds = pathlib.Path(__file__).resolve().parents[2] / "crds"
    for path in sorted(crds.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition" and \
                    doc["spec"]["group"] == specs.GROUP:
                return dict(doc)
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{specs.PLURAL}.{specs.GROUP}"},
        "spec": {
            "group": specs.GROUP, "scope": "Namespaced",
            "names": {"kind": specs.KIND, "plural": specs.PLURAL,
                      "singular": specs.KIND.lower(), "shortNames": ["sp"]},
            "versions": [{"name": specs.VERSION, "served": True, "storage": True,
                          "subresources": {"status": {}},
                          "schema": {"openAPIV3Schema": {
                              "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}],
        },
    }
