"""A Kubernetes API emulator, realistic where foreseer and Kopf depend on API semantics.

kmock's stock KubernetesEmulator (0.8) is an in-memory dict store: it sets no resourceVersion,
uid or generation, ignores generateName, merges /status and /scale into the object, returns the
whole Deployment from /scale, never answers 409, and crashes on ``GET /api/v1/namespaces``. An
autoscaler that is only tested against that would never see the failures it must survive, so
`Emulator` builds on kmock's stateless ``KubernetesScaffold`` through its public API only and
serves every object request and every group version's resource list itself (the root, group and
version discovery, and non-object paths stay kmock's):

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
- TokenReview and SubjectAccessReview (``POST`` only, nothing stored) answer from tables the
  test sets: `Emulator.tokens` (token -> the user it authenticates) and `Emulator.access_rules`
  (who may do what on which non-resource URL, as RBAC's ``nonResourceURLs`` rules match);
  `Emulator.reviews` keeps every review answered.

It is also a strict bed: every request is admitted as kube-apiserver admits it, so what a real
cluster refuses fails here too, in every test that goes through the HTTP API (the operator,
Kopf, the `kubernetes` client, kubectl):

- a body that is not strict JSON gets 400 BadRequest with a Status, as the server's Go decoder
  answers: ``NaN``, ``Infinity`` and ``-Infinity`` (which Python's json reads and writes)
  like any malformed body ("error decoding patch: invalid character 'I' looking for
  beginning of value").
- a custom resource whose CRD has a schema is pruned, defaulted and validated on every write
  (create, PUT, merge and JSON patch of the object, its ``/status`` and its ``/scale``),
  in the server's order:

  - unknown fields (not in the structural schema, not under
    ``x-kubernetes-preserve-unknown-fields``) get 400 BadRequest with
    ``?fieldValidation=Strict`` (kubectl's default; "strict decoding error: unknown field
    "spec.x""); otherwise, as the server does by default, they are pruned, with a
    ``Warning: 299 - "unknown field ..."`` header (none with ``fieldValidation=Ignore``).
    A null where the schema is not nullable is dropped, so the field's default applies.
  - the defaulted object is checked against the openAPIV3Schema (with `jsonschema`, through
    `foreseer.lab.crd_validation`, which the CRD tests use too: types, enums, bounds,
    patterns, ``required``, ``date-time``), the keys of ``x-kubernetes-list-type: map``
    lists, then the CEL rules (``x-kubernetes-validations``); a violation is a 422 Invalid
    naming each field ("status.forecast.mase: Invalid value: ..."). A status write validates
    ``.status`` against ``properties.status``, any other write the rest. As on Kubernetes
    1.30 and later (validation ratcheting), an update may keep a value that was already
    invalid: only what the write changes must be valid.
- a PUT of a custom resource without ``metadata.resourceVersion`` gets 422 (a CRD allows no
  unconditional update), and a stale one gets 409 Conflict, as does a merge or JSON patch of
  the object, ``/status`` or ``/scale`` that carries a stale one.

`Emulator.create_object` seeds an object without admission (e.g. one stored before the CRD
changed); `Emulator.patch_object` is admitted like kubectl's patch.

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
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import jsonschema
import kmock
import multidict
import yaml

from foreseer.lab.crd_validation import as_json_schema, cel_errors
from foreseer.operator.crds import crd

Body = dict[str, Any]
Key = tuple[kmock.resource, str | None, str]

DEPLOYMENTS = kmock.resource("apps", "v1", "deployments")
PODS = kmock.resource("", "v1", "pods")
EVENTS = kmock.resource("", "v1", "events")
NAMESPACES = kmock.resource("", "v1", "namespaces")
CRDS = kmock.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
TOKEN_REVIEWS = kmock.resource("authentication.k8s.io", "v1", "tokenreviews")
ACCESS_REVIEWS = kmock.resource("authorization.k8s.io", "v1", "subjectaccessreviews")
_REVIEW_KINDS = {TOKEN_REVIEWS: "TokenReview", ACCESS_REVIEWS: "SubjectAccessReview"}

# The paths of objects, served here: namespaces first (a bare /api/v1/namespaces is their list),
# then any resource's, e.g. /apis/apps/v1/namespaces/shop/deployments/web/scale.
_NAMESPACE_PATH = re.compile(r"/api/v1/namespaces(?:/([^/]+)(?:/(status|finalize))?)?/?")
_OBJECT_PATH = re.compile(
    r"/(?:api/(?P<core>[^/]+)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<namespace>[^/]+))?/(?P<plural>[^/]+)"
    r"(?:/(?P<name>[^/]+)(?:/(?P<subresource>[^/]+(?:/[^/]+)*))?)?/?")
# A group version's APIResourceList, served here (GET only, on the paths kmock would serve it),
# and the other discovery paths, which kmock serves.
_VERSION_PATH = re.compile(r"/api/(?P<core>[^/]+)|/apis/(?P<group>[^/]+)/(?P<version>[^/]+)")
_DISCOVERY_PATH = re.compile(
    r"/api/(?P<core>[^/]+)/?|/apis/(?P<group>[^/]+)(?:/(?P<version>[^/]+))?/?")
# The alphabet and length the API server uses for generateName suffixes (no vowels: no words).
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_MERGE_TYPES = {"application/merge-patch+json", "application/json"}
_STRATEGIC = "application/strategic-merge-patch+json"
_JSON_PATCH = "application/json-patch+json"
_APPLY_PATCH = "application/apply-patch+yaml"
# Top-level fields every object has whatever its CRD schema says: never pruned or validated.
_ROOT_META = ("apiVersion", "kind", "metadata")
_FIELD_VALIDATION = ("Ignore", "Warn", "Strict")


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


def _invalid_fields(resource: kmock.resource, name: str, errors: list[str]) -> ApiError:
    """422 Invalid naming every offending field, as the API server words it: one error bare,
    several in brackets; ``details.causes`` carries one cause per field."""
    message = errors[0] if len(errors) == 1 else f"[{', '.join(errors)}]"
    error = _invalid(resource, name, message)
    causes = [{"reason": "FieldValueInvalid", "message": e, "field": e.split(":", 1)[0]}
              for e in errors]
    return attrs.evolve(error, details={**(error.details or {}), "causes": causes})


class _NotJsonError(ValueError):
    """A request body that a real API server cannot decode (it is not strict JSON)."""


def _strict_json(text: str | bytes) -> Any:
    """A body as a real API server decodes it: strict JSON. Python's json reads (and writes)
    ``NaN``, ``Infinity`` and ``-Infinity``; Go's does not, and neither does the server."""

    def refuse(constant: str) -> Any:
        if constant.startswith("-"):
            raise _NotJsonError(f"invalid character {constant[1]!r} in numeric literal")
        raise _NotJsonError(f"invalid character {constant[0]!r} looking for beginning of value")

    try:
        return json.loads(text, parse_constant=refuse)
    except _NotJsonError:
        raise
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
        raise _NotJsonError(str(exc)) from exc


def _undecodable(method: str, error: _NotJsonError) -> ApiError:
    if method == "PATCH":
        return ApiError(400, "BadRequest", f"error decoding patch: {error}")
    return ApiError(400, "BadRequest", f"couldn't get version/kind; json parse error: {error}")


def _require_json(method: str, body: Any) -> None:
    """Refuse a body a client could not have sent as JSON (for the in-process helpers)."""
    try:
        json.dumps(body, allow_nan=False)
    except ValueError as exc:  # "Out of range float values are not JSON compliant"
        raise _undecodable(method, _NotJsonError(str(exc))) from exc


@attrs.define
class _Admission:
    """How one write treats fields its CRD schema does not know (``?fieldValidation=``), and
    the warnings it collects for the response's ``Warning`` headers."""

    mode: str = "Warn"
    """Strict: 400 BadRequest; Warn (a real server's default): prune them, with a warning;
    Ignore: prune them silently."""
    validate: bool = True
    """False for a test's seed (`Emulator.create_object`): pruned and defaulted only."""
    warnings: list[str] = attrs.field(factory=list)

    @classmethod
    def of(cls, params: Mapping[str, str]) -> _Admission:
        mode = params.get("fieldValidation") or "Warn"
        if mode not in _FIELD_VALIDATION:
            raise ApiError(400, "BadRequest", f'fieldValidation: Unsupported value: "{mode}": '
                           f"supported values: {', '.join(map(json.dumps, _FIELD_VALIDATION))}")
        return cls(mode)


@attrs.frozen
class _Schema:
    """A served version's structural schema, ready to prune, default and validate with."""

    root: Body
    whole: jsonschema.Draft4Validator
    """The object without apiVersion, kind and metadata, against the whole schema."""
    status: jsonschema.Draft4Validator
    """``.status`` alone, against ``properties.status`` (writes of the status subresource)."""

    @classmethod
    def of(cls, root: Body) -> _Schema:
        status = (root.get("properties") or {}).get("status") or {}
        whole, part = as_json_schema(_without_root_meta(root)), as_json_schema(status)
        for schema in (whole, part):
            jsonschema.Draft4Validator.check_schema(schema)
        return cls(root, jsonschema.Draft4Validator(whole, format_checker=_FORMATS),
                   jsonschema.Draft4Validator(part, format_checker=_FORMATS))


def _without_root_meta(root: Body) -> Body:
    """The root schema without apiVersion, kind and metadata, which the server handles itself
    (a CRD need not declare them, and pruning never removes them)."""
    properties = {k: v for k, v in (root.get("properties") or {}).items() if k not in _ROOT_META}
    return {**root, "properties": properties} if "properties" in root else dict(root)


# The formats the API server checks in this project's CRDs. jsonschema checks date-time only
# with an optional package (rfc3339-validator), so it is given here; other formats pass.
_FORMATS = jsonschema.FormatChecker(())


def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True  # the type keyword reports a non-string
    if not re.fullmatch(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)", value):
        raise ValueError(f"{value!r} is not an RFC 3339 date-time")
    datetime.datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    return True


_FORMATS.checks("date-time", raises=ValueError)(_is_date_time)


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

    def matches(self, request: kmock.Request) -> bool:
        return (
            self.hits < self.times
            and request.method.value == self.method
            and request.resource == self.resource
            and request.subresource == self.subresource
            and (self.name is None or request.name == self.name)
        )


@attrs.frozen
class AccessRule:
    """One grant on non-resource URLs, as an RBAC rule bound to a user or a group gives it."""

    verbs: tuple[str, ...]
    """e.g. ("get",); "*" is every verb."""
    paths: tuple[str, ...]
    """e.g. ("/metrics",); a trailing "*" matches every path with that prefix, as in RBAC."""
    user: str | None = None
    """The user it is bound to, e.g. system:serviceaccount:monitoring:prometheus."""
    group: str | None = None
    """Or the group it is bound to."""

    def allows(self, user: str, groups: Iterable[str], verb: str, path: str) -> bool:
        bound = (self.user is not None and self.user == user) or (
            self.group is not None and self.group in groups)
        return bound and ("*" in self.verbs or verb in self.verbs) and any(
            path == p or (p.endswith("*") and path.startswith(p[:-1])) for p in self.paths)


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
class Emulator(kmock.KubernetesScaffold):
    """kmock's Kubernetes scaffold with real API semantics for objects (see the module docstring).

    Objects stay visible to assertions in ``emulator.objects[resource, ns, name]``, a kmock
    ObjectsArray (with their version history); `read_object` returns the current body as a
    plain dict.
    """

    history_limit: int = 100
    """Versions kept per object in ``objects[...].history``; bounds memory in long benchmarks."""
    request_log_limit: int = 10_000
    """Requests kept for assertions (iterate the emulator: ``[r for r in emulator if
    r.method.value == "PATCH"]``); bounds memory likewise."""
    watch_log_limit: int = 10_000
    """Events kept per resource for watches that resume from a resourceVersion (older: 410)."""
    tokens: dict[str, Body] = attrs.field(factory=dict)
    """Bearer tokens a TokenReview authenticates, each with its authentication.k8s.io/v1
    UserInfo ({"username", "uid", "groups", "extra"}); any other token is not authenticated."""
    access_rules: list[AccessRule] = attrs.field(factory=list)
    """What a SubjectAccessReview allows: a review is allowed when one rule allows it."""
    reviews: list[Body] = attrs.field(factory=list, init=False)
    """Every TokenReview and SubjectAccessReview answered, as answered (bounded like the
    request log)."""
    warnings: list[str] = attrs.field(factory=list, init=False)
    """Every ``Warning`` header sent, as "METHOD path: warning" (e.g. a pruned unknown field
    that the client may not have meant to lose); bounded like the request log."""

    _received: collections.deque[kmock.Request] = attrs.field(
        default=attrs.Factory(lambda self: collections.deque(maxlen=self.request_log_limit),
                              takes_self=True), init=False)
    _request_ids: Iterator[int] = attrs.field(factory=itertools.count, init=False)
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
    _schemas: dict[kmock.resource, _Schema] = attrs.field(factory=dict, init=False)
    _closing: bool = attrs.field(default=False, init=False)
    objects: kmock.ObjectsArray = attrs.field(factory=kmock.ObjectsArray, init=False)
    """Every object ever stored, with its version history (bounded by `history_limit`)."""
    _lock: asyncio.Lock = attrs.field(factory=asyncio.Lock, init=False)
    """Held while objects are read or written: a request sees one consistent store."""
    # The current body of every live object, by resource: `objects` keeps each object's
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
            schema = version.get("schema", {}).get("openAPIV3Schema", {})
            if schema:  # apiextensions.k8s.io/v1 requires one; a test's CRD may leave it out
                self._schemas[res] = _Schema.of(schema)
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
        """Create an object as a POST would (stamped metadata, watch event); returns it.

        A seed, not a request: it keeps ``.status`` (e.g. a Deployment that is already ready)
        and is not validated, as if it had been stored before the CRD's current schema; it is
        pruned and defaulted as a real server shows such an object. Test admission through
        the HTTP API instead.
        """
        resource = kmock.resource(resource)
        if resource not in self.resources:
            raise ValueError(f"unknown resource {resource}; install its CRD first")
        namespace = namespace or body.get("metadata", {}).get("namespace")
        async with self._lock:
            return copy.deepcopy(self._create(resource, namespace, copy.deepcopy(dict(body)),
                                              _Admission("Ignore", validate=False),
                                              keep_status=True))

    async def patch_object(self, resource: kmock.resource | str, namespace: str | None, name: str,
                    patch: Mapping[str, Any], subresource: str | None = None) -> Body:
        """Merge-patch an object (or its /status or /scale) as a client would; returns it.

        Admitted as kubectl's patch would be (``fieldValidation=Strict``): a patch the API
        server would refuse raises `ApiError` (400, 409 or 422).
        """
        resource = kmock.resource(resource)
        _require_json("PATCH", patch)
        async with self._lock:
            return copy.deepcopy(self._write(resource, namespace, name, subresource, "PATCH",
                                             "application/merge-patch+json", dict(patch),
                                             _Admission("Strict")))

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

    def _resource_list(self, path: str) -> Body | None:
        """The APIResourceList of a group version, as a real server writes it so kubectl can map
        names: the core groupVersion is "v1", and subresources have no short names or
        categories of their own, the verbs they serve, and Scale as the kind of /scale. None
        for a path that names no group version, or for a group version that serves nothing
        (kmock answers those: 404 for a group of its own)."""
        match = _VERSION_PATH.fullmatch(path)
        if match is None:
            return None
        group, version = _group_version(match)
        served = sorted((res for res in self.resources
                         if res.group == group and res.version == version), key=str)
        if not served and group:
            return None
        entries: list[Body] = []
        for resource in served:
            info, plural = self.resources[resource], str(resource.plural)
            kind = info.kind if info.kind is not None else plural.capitalize()
            entries.append({
                "name": plural, "kind": kind,
                "singularName": info.singular if info.singular is not None else plural,
                "shortNames": sorted(info.shortnames), "categories": sorted(info.categories),
                "verbs": sorted(info.verbs), "namespaced": info.namespaced})
            for sub in sorted(info.subresources):
                entry = {"name": f"{plural}/{sub}", "kind": "Scale" if sub == "scale" else kind,
                         "singularName": "", "shortNames": [], "categories": [],
                         "verbs": ["get", "patch", "update"], "namespaced": info.namespaced}
                if sub == "scale":
                    entry.update(group="autoscaling", version="v1")
                entries.append(entry)
        return {"apiVersion": "v1", "kind": "APIResourceList",
                "groupVersion": f"{group}/{version}".lstrip("/"), "resources": entries}

    async def __call__(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """Serve a request: object requests and resource lists here, anything else by kmock.

        A request served here is recorded, refused or not, as kmock records those it serves,
        for the views of its DSL (``for r in emulator``, ``len(emulator)``).
        """
        body = await raw.read()
        resource, namespace, name, subresource = _target(raw.path)
        params = dict(raw.query)
        request = kmock.Request(
            id=next(self._request_ids), method=raw.method, url=raw.url, params=params,
            headers=dict(raw.headers), cookies=dict(raw.cookies), body=body,
            text=body.decode(errors="replace"),
            data=_lenient_json(body),  # as kmock parses it; `_respond` decodes it strictly
            action=_action(raw.method, name, params) if resource is not None else None,
            resource=resource, namespace=namespace, name=name, subresource=subresource)
        if resource is None or resource.plural is None:
            listing = self._resource_list(raw.path) if raw.method == "GET" else None
            if listing is None:
                return await super().__call__(raw)  # kmock records the request itself
            self._received.append(request)
            return aiohttp.web.json_response(listing)
        self._received.append(request)
        try:
            return await self._respond(request, raw)
        except Exception as exc:  # an emulator bug, answered as kmock answers one: a 500 Status
            if self.active:
                self.errors.append(exc)
            return _status_response(ApiError(500, type(exc).__name__, repr(exc),
                                             {"traceback": traceback.format_exc()}))

    def __iter__(self) -> Iterator[kmock.Request]:
        """The requests received, for kmock's views (``emulator[...]``, ``len(emulator)``):
        those kmock served (the rest of discovery, other paths), then those served here (the
        last `request_log_limit` of them), each oldest first."""
        yield from super().__iter__()
        yield from list(self._received)

    async def _respond(self, request: kmock.Request,
                       raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        admission = _Admission()
        try:
            data = _decoded(request)
            if request.method.value in ("POST", "PUT", "PATCH"):
                admission = _Admission.of(request.params)
            for fault in self._faults:
                if fault.matches(request):
                    fault.hits += 1
                    if fault.hook is None:
                        raise ApiError(fault.status, "Injected", f"injected fault {fault.status}")
                    await fault.hook()
            if request.method.value == "GET" and request.params.get("watch") in ("true", "1"):
                return await self._watch(request, raw)
            result = await self._serve(request, data, admission)
        except kmock.KubernetesError as exc:
            return _status_response(exc)
        created = request.method.value == "POST"
        # One header per warning, as the API server sends them (e.g. a pruned unknown field).
        warnings = multidict.CIMultiDict(("Warning", f"299 - {json.dumps(warning)}")
                                         for warning in admission.warnings)
        self.warnings += [f"{request.method.value} {request.url.path}: {warning}"
                          for warning in admission.warnings]
        del self.warnings[: max(0, len(self.warnings) - self.request_log_limit)]
        return aiohttp.web.json_response(result, status=201 if created else 200,
                                         headers=warnings)

    async def _serve(self, request: kmock.Request, data: Any, admission: _Admission) -> Body:
        resource, name, sub = request.resource, request.name, request.subresource
        assert resource is not None
        if resource not in self.resources:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource "
                                            f"({_qualified(resource)})")
        method = request.method.value
        if resource in _REVIEW_KINDS:
            return self._review(resource, method, data)
        namespace = request.namespace
        content_type = request.headers.get("Content-Type", "application/json").split(";")[0]
        # kubectl asks for a server-side Table to print a CRD's additionalPrinterColumns.
        as_table = "as=Table" in request.headers.get("Accept", "") and resource in self._columns
        async with self._lock:
            if method == "GET" and name is None:
                listing = self._list(resource, namespace, request.params)
                return self._table(resource, listing["items"]) if as_table else listing
            if method == "GET" and name is not None:
                body = self._read(resource, namespace, name, sub)
                return self._table(resource, [body]) if as_table and sub is None else body
            if method == "POST" and name is None:
                if not isinstance(data, dict | None):
                    raise ApiError(400, "BadRequest", "couldn't get version/kind; json parse "
                                   f"error: a JSON {type(data).__name__} is not an object")
                return self._create(resource, namespace, dict(data or {}), admission)
            if method in ("PATCH", "PUT") and name is not None:
                return self._write(resource, namespace, name, sub, method, content_type, data,
                                   admission)
            if method == "DELETE" and name is not None and sub is None:
                return self._delete(resource, namespace, name)
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on {request.url.path}")

    # ---- token and access reviews ------------------------------------------------------------

    def _review(self, resource: kmock.resource, method: str, data: Any) -> Body:
        """A TokenReview or SubjectAccessReview as kube-apiserver answers one: created, never
        stored, the spec echoed with the status filled in."""
        kind = _REVIEW_KINDS[resource]
        if method != "POST":
            raise ApiError(405, "MethodNotAllowed",
                           "the server does not allow this method on the requested resource")
        version = f"{resource.group}/{resource.version}"
        if (not isinstance(data, dict) or data.get("apiVersion") != version
                or data.get("kind") != kind):
            raise ApiError(400, "BadRequest",
                           f"the object provided is unrecognized (must be of type {kind})")
        spec = data.get("spec") or {}
        review = self._review_token if kind == "TokenReview" else self._review_access
        status = review(spec)
        answer = {"apiVersion": version, "kind": kind, "metadata": {"creationTimestamp": None},
                  "spec": spec, "status": status}
        self.reviews.append(copy.deepcopy(answer))
        del self.reviews[: max(0, len(self.reviews) - self.request_log_limit)]
        return answer

    def _review_token(self, spec: Body) -> Body:
        token = spec.get("token")
        if not token:  # the API server's own words (pkg/registry/authentication/tokenreview)
            raise ApiError(400, "BadRequest", "token is required for TokenReview in "
                                              "authentication")
        user = self.tokens.get(token)
        if user is None:
            return {"user": {}, "error": "[invalid bearer token, token lookup failed]"}
        return {"authenticated": True, "user": copy.deepcopy(user),
                "audiences": list(spec.get("audiences") or ["https://kubernetes.default.svc"])}

    def _review_access(self, spec: Body) -> Body:
        resource_attrs, url = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
        errors = []
        if (resource_attrs is None) == (url is None):
            errors.append('spec.resourceAttributes: Invalid value: "null": exactly one of '
                          "nonResourceAttributes or resourceAttributes must be specified")
        user, groups = spec.get("user") or "", list(spec.get("groups") or [])
        if not user and not groups:
            errors.append('spec.user: Invalid value: "": at least one of user or group must '
                          "be specified")
        if errors:
            message = errors[0] if len(errors) == 1 else f"[{', '.join(errors)}]"
            raise ApiError(422, "Invalid",
                           f'SubjectAccessReview.authorization.k8s.io "" is invalid: {message}')
        if url is None:  # resource attributes: no rule of this table grants any
            return {"allowed": False}
        verb, path = url.get("verb", ""), url.get("path", "")
        for index, rule in enumerate(self.access_rules):
            if rule.allows(user, groups, verb, path):
                return {"allowed": True, "reason": f"allowed by access rule {index}"}
        return {"allowed": False}  # RBAC has no opinion: not allowed, and no reason given

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
                admission: _Admission, keep_status: bool = False) -> Body:
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
        body = self._admit(resource, body, admission, "all")
        meta = body["metadata"]
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
        return self._store_new(resource, namespace, body)

    def _write(self, resource: kmock.resource, namespace: str | None, name: str, sub: str | None,
               method: str, content_type: str, data: Any, admission: _Admission) -> Body:
        current = self._require(resource, namespace, name)
        if sub == "scale" and self._has_sub(resource, "scale"):
            return self._write_scale(resource, current, method, content_type, data, admission)
        if sub not in (None, "status") or (sub == "status"
                                           and not self._has_sub(resource, "status")):
            raise _not_found(resource, f"{name}/{sub}")
        if (method == "PUT" and resource in self._custom and isinstance(data, dict)
                and not (data.get("metadata") or {}).get("resourceVersion")):
            # A custom resource allows no unconditional update (a builtin like a Deployment does).
            raise _invalid_fields(resource, name, ["metadata.resourceVersion: Invalid value: "
                                                   "0x0: must be specified for an update"])
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
        proposed = self._admit(resource, proposed, admission,
                               "status" if sub == "status" else "main", current)
        return self._store_update(resource, current, proposed)

    def _admit(self, resource: kmock.resource, body: Body, admission: _Admission, part: str,
               old: Body | None = None) -> Body:
        """`body` as the API server would store it, or the error it would answer instead.

        For a resource whose CRD has a schema: unknown fields are pruned (400 under
        ``fieldValidation=Strict``), defaults filled in, then the object is validated (422
        naming every field) against the structural schema, the list-map keys and the CEL
        rules. `part` is what the write changes and so what is validated: "status" (a status
        write), "main" (any other write: all but a status subresource's ``.status``) or "all".
        On an update, an error in a value the write left as it was (`old`) is let through, as
        the API server's validation ratcheting does (Kubernetes 1.30 and later).
        """
        schema = self._schemas.get(resource)
        if schema is None:
            return body  # a builtin (or a schemaless test CRD): taken as it is
        unknown: list[str] = []
        content = _prune({k: v for k, v in body.items() if k not in _ROOT_META},
                         schema.root, "", unknown)
        if unknown and admission.mode == "Strict":
            kind = self.resources[resource].kind
            raise ApiError(400, "BadRequest",
                           f'{kind} in version "{resource.version}" cannot be handled as a '
                           f"{kind}: strict decoding error: "
                           + ", ".join(f'unknown field "{path}"' for path in unknown))
        if admission.mode == "Warn":
            admission.warnings += [f'unknown field "{path}"' for path in unknown]
        admitted = {**{k: body[k] for k in _ROOT_META if k in body}, **content}
        _apply_defaults(admitted, schema.root)
        if not admission.validate:
            return admitted
        before = {k: v for k, v in (old or {}).items() if k not in _ROOT_META}
        if part == "status":
            checked = {"status": admitted["status"]} if "status" in admitted else {}
            errors = _schema_errors(schema.status, checked.get("status"), "status",
                                    before.get("status"), old is not None) if checked else []
        else:
            skipped = ("status",) if part == "main" and self._has_sub(resource, "status") else ()
            checked = {k: v for k, v in admitted.items()
                       if k not in _ROOT_META and k not in skipped}
            before = {k: v for k, v in before.items() if k not in skipped}
            errors = _schema_errors(schema.whole, checked, "", before, old is not None)
        errors += [e for e in _duplicate_keys(checked, schema.root, "")
                   if e not in _duplicate_keys(before, schema.root, "")]
        properties = schema.root.get("properties") or {}
        if not errors:  # CEL rules run on schema-valid objects only, as on a real server
            for key, value in checked.items():
                if old is None or before.get(key) != value:
                    found = cel_errors(value, properties.get(key) or {}, key)
                    errors += [e for e in found if old is None or e not in cel_errors(
                        before.get(key), properties.get(key) or {}, key)]
        if errors:
            raise _invalid_fields(resource, body["metadata"].get("name", ""), errors)
        return admitted

    def _write_scale(self, resource: kmock.resource, current: Body, method: str,
                     content_type: str, data: Any, admission: _Admission) -> Body:
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
        updated = self._admit(resource, updated, admission, "main", current)
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
            proposed = _merge_patch(current, data)
        else:
            raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {content_type}")
        if not isinstance(proposed, dict):
            raise _invalid(resource, name, "the patched object is not a JSON object")
        # The precondition is the resourceVersion the written object carries: the PUT body's,
        # or what a merge or JSON patch left there (the current one unless the patch set it).
        wanted = (proposed.get("metadata") or {}).get("resourceVersion")
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
        if key in self.objects:
            self.objects[key].create(body)
        else:
            self.objects[key] = body
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
        if _spec_part(proposed) != _spec_part(current):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        meta["resourceVersion"] = old_meta["resourceVersion"]
        if proposed == current:
            return current  # a no-op write does not bump resourceVersion, as on a real server
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self._remove(resource, meta.get("namespace"), meta["name"], proposed)
        meta["resourceVersion"] = self._next_version()
        obj = self.objects[resource, meta.get("namespace"), meta["name"]]
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
        self.objects[resource, namespace, name].delete()
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

    async def _watch(self, request: kmock.Request,
                     raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        resource = request.resource
        assert resource is not None
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
        await response.prepare(raw)
        timeout = float(params["timeoutSeconds"]) if params.get("timeoutSeconds") else None
        try:
            async with asyncio.timeout(timeout):
                for event in backlog:
                    await response.write(json.dumps(event).encode() + b"\n")
                while watcher in self._watchers:
                    queued = await watcher.queue.get()
                    if queued is None:
                        break
                    await response.write(json.dumps(queued).encode() + b"\n")
        except (TimeoutError, ConnectionError):
            pass  # the server-side timeout, or the client went away
        finally:
            self._watchers.discard(watcher)
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response


def _target(path: str) -> tuple[kmock.resource | None, str | None, str | None, str | None]:
    """(resource, namespace, name, subresource) of a request's path, as kmock parses one. The
    resource is None outside the API; its plural is None on a discovery path (/api/v1,
    /apis/apps, /apis/apps/v1), which kmock serves; anything else is an object path."""
    match = _NAMESPACE_PATH.fullmatch(path)
    if match is not None:
        return NAMESPACES, None, match[1], match[2]
    match = _OBJECT_PATH.fullmatch(path)
    if match is not None:
        group, version = _group_version(match)
        return (kmock.resource(group, version, match["plural"]), match["namespace"],
                match["name"], match["subresource"])
    match = _DISCOVERY_PATH.fullmatch(path)
    if match is not None:
        group, version = _group_version(match)
        return kmock.resource(group=group, version=version), None, None, None
    return None, None, None, None


def _group_version(match: re.Match[str]) -> tuple[str, str | None]:
    """The group ("" for the core group) and version of an /api/{v} or /apis/{g}/{v} path."""
    return ("", match["core"]) if match["core"] else (match["group"], match["version"])


def _action(method: str, name: str | None, params: Mapping[str, str]) -> kmock.action | None:
    """The Kubernetes action of an API request, as kmock guesses it for its DSL."""
    if method == "GET" and params.get("watch") == "true":
        return kmock.action.WATCH
    if name is None:
        return {"GET": kmock.action.LIST, "POST": kmock.action.CREATE}.get(method)
    return {"GET": kmock.action.FETCH, "PATCH": kmock.action.UPDATE,
            "DELETE": kmock.action.DELETE}.get(method)


def _lenient_json(body: bytes) -> Any:
    """A body as kmock parses one (Python's json: NaN and all), or None when it is not JSON."""
    try:
        return json.loads(body)
    except ValueError:  # JSONDecodeError, or bytes that are not UTF-8
        return None


def _decoded(request: kmock.Request) -> Any:
    """The request body, decoded strictly (400 BadRequest for NaN, ±Infinity or non-JSON)."""
    content_type = request.headers.get("Content-Type", "application/json").split(";")[0]
    if not request.body or content_type == _APPLY_PATCH:
        return request.data  # nothing to decode; a YAML apply patch is refused with 415 later
    try:
        return _strict_json(request.body)
    except _NotJsonError as exc:
        raise _undecodable(request.method.value, exc) from exc


def _merge_patch(value: Mapping[str, Any], patch: Mapping[str, Any]) -> Body:
    """`value` merge-patched with `patch` (RFC 7386), as the API server applies a merge patch:
    a None deletes its key, a mapping merges into a mapping (into nothing where the value was
    not one), anything else replaces; the keys keep `value`'s order, new ones after. Nothing
    is copied that did not change."""
    result: Body = {}
    for key in [*value, *(key for key in patch if key not in value)]:
        if key not in patch:
            result[key] = value[key]
        elif patch[key] is None:
            continue
        elif isinstance(patch[key], Mapping):
            base = value.get(key)
            result[key] = _merge_patch(base if isinstance(base, Mapping) else {}, patch[key])
        else:
            result[key] = patch[key]
    return result


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


def _prune(value: Any, schema: Mapping[str, Any], path: str, unknown: list[str]) -> Any:
    """`value` as the API server keeps it under a structural schema: a field the schema does
    not declare is dropped (its path added to `unknown`) unless the object has
    ``x-kubernetes-preserve-unknown-fields``, and a null where the schema is not nullable is
    dropped, so that the field's default (if any) applies."""
    if isinstance(value, dict) and schema.get("type", "object") == "object":
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        embedded = schema.get("x-kubernetes-embedded-resource")
        kept: dict[str, Any] = {}
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            sub = properties.get(key, extra if isinstance(extra, Mapping) else None)
            if sub is None:
                if schema.get("x-kubernetes-preserve-unknown-fields") or (
                        embedded and key in _ROOT_META):
                    kept[key] = item
                else:
                    unknown.append(where)
            elif item is not None or sub.get("nullable"):
                kept[key] = _prune(item, sub, where, unknown)
        return kept
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [_prune(item, schema["items"], f"{path}[{i}]", unknown)
                for i, item in enumerate(value)]
    return value


def _unchanged(old: Any, path: Iterable[str | int], value: Any) -> bool:
    """Whether `old` holds `value` at `path` (a path of keys and indexes)."""
    for part in path:
        present = (isinstance(old, list) and isinstance(part, int) and part < len(old)) or (
            isinstance(old, dict) and part in old)
        if not present:
            return False
        old = old[part]
    return bool(old == value)


def _duplicate_keys(value: Any, schema: Mapping[str, Any], path: str) -> list[str]:
    """Entries of an ``x-kubernetes-list-type: map`` list that repeat another's keys (e.g. two
    conditions of one type), which the API server refuses."""
    errors = []
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key in value:
                errors += _duplicate_keys(value[key], sub, f"{path}.{key}" if path else key)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen = set()
        for i, item in enumerate(value):
            if schema.get("x-kubernetes-list-type") == "map" and isinstance(item, dict):
                identity = json.dumps({key: item.get(key) for key in keys}, sort_keys=True)
                if identity in seen:
                    errors.append(f"{path}[{i}]: Duplicate value: {identity}")
                seen.add(identity)
            errors += _duplicate_keys(item, schema["items"], f"{path}[{i}]")
    return errors


def _schema_errors(validator: jsonschema.Draft4Validator, instance: Any, prefix: str,
                   old: Any, ratchet: bool) -> list[str]:
    """Schema violations as the API server reports them: "field: Required value" or
    "field: Invalid value: <value>: <why>". With `ratchet` (an update), a violation in a value
    that is as it was in `old` is not one (validation ratcheting)."""
    errors: list[str] = []
    for error in validator.iter_errors(instance):
        if ratchet and _unchanged(old, error.absolute_path, error.instance):
            continue
        path = prefix
        for part in error.absolute_path:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
        if error.validator == "required":  # one error per missing name, each naming them all
            found = [f"{path}.{name}: Required value" if path else f"{name}: Required value"
                     for name in error.validator_value
                     if isinstance(error.instance, dict) and name not in error.instance]
        else:
            shown = ('"object"' if isinstance(error.instance, dict) else '"array"'
                     if isinstance(error.instance, list) else json.dumps(error.instance))
            found = [f"{path or '<root>'}: Invalid value: {shown}: {error.message}"]
        errors += [e for e in found if e not in errors]
    return errors


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


def _has(key: str) -> Callable[[Mapping[str, str]], bool]:
    return lambda labels: key in labels


def _lacks(key: str) -> Callable[[Mapping[str, str]], bool]:
    return lambda labels: key not in labels


def _within(key: str, values: set[str]) -> Callable[[Mapping[str, str]], bool]:
    """``key in (values)`` and ``key=value``: a missing key matches neither."""
    return lambda labels: labels.get(key) in values


def _without(key: str, values: set[str]) -> Callable[[Mapping[str, str]], bool]:
    """``key notin (values)`` and ``key!=value``: a missing key matches both."""
    return lambda labels: labels.get(key) not in values


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
            checks.append(_lacks(match["nkey"]))
        elif match["op"] in ("=", "=="):
            checks.append(_within(match["key"], {match["value"]}))
        elif match["op"] == "!=":
            checks.append(_without(match["key"], {match["value"]}))
        elif match["setop"]:
            values = {v.strip() for v in match["values"].split(",") if v.strip()}
            if match["setop"] == "in":
                checks.append(_within(match["key"], values))
            else:
                checks.append(_without(match["key"], values))
        else:
            checks.append(_has(match["key"]))
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
    """The ScalingPolicy CRD, generated from the operator's models as ``make crds`` writes it."""
    return dict(crd())
