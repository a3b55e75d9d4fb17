"""Operator settings: grouped dataclasses, loaded from FORESEER_* variables and CLI flags.

A CLI flag wins over its environment variable, which wins over the default.
Every field is documented where it is declared, as in kopf's OperatorSettings.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from foreseer.operator.scoping import QueryScope

ENV_PREFIX = "FORESEER_"


@dataclass(frozen=True)
class PrometheusSettings:
    url: str = "http://localhost:9090"
    """Base URL of the Prometheus HTTP API, e.g. http://prometheus.monitoring:9090."""
    bearer_token_file: str | None = None
    """File with a bearer token, re-read on every connection (for projected, rotating tokens)."""
    username: str | None = None
    """User name for HTTP basic auth; the password comes from ``password_file``."""
    password_file: str | None = None
    """File holding the basic-auth password (kept out of the environment and the process list)."""
    ca_file: str | None = None
    """PEM bundle that signs Prometheus' TLS certificate, for a private CA."""
    insecure: bool = False
    """Skip TLS verification. Must be asked for explicitly; never the default."""
    timeout: float = 10.0
    """Seconds before one query is abandoned."""
    retries: int = 2
    """Retries of a failed query within one tick, before the tick counts it as failed."""
    query_scope: QueryScope = QueryScope.NAMESPACE
    """``namespace``: every vector selector of a policy's query must match the policy's own
    namespace (the matcher is added where absent; a query naming another namespace, or
    matching it by regex or negation, is refused). ``cluster``: no restriction, the explicit
    opt-out for a single-tenant cluster."""
    tenancy_parameter: str | None = None
    """With a tenancy proxy in front of Prometheus (prom-label-proxy, or the Thanos querier's
    tenancy port), the query parameter that carries the enforced label: every query also
    sends ``?<parameter>=<the policy's namespace>``, e.g. ``namespace``."""

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(
                f"prometheus url must start with http:// or https://, got {self.url!r}")
        if self.insecure and self.ca_file:
            raise ValueError("choose either a TLS CA file or --prometheus-insecure, not both")
        if bool(self.username) != bool(self.password_file):
            raise ValueError("basic auth needs both a username and a password file")
        if self.bearer_token_file and self.username:
            raise ValueError("choose either a bearer-token file or basic auth, not both")
        if self.timeout <= 0:
            raise ValueError(f"prometheus timeout must be positive, got {self.timeout}")
        if self.retries < 0:
            raise ValueError(f"prometheus retries must be 0 or more, got {self.retries}")
        object.__setattr__(self, "query_scope", QueryScope(self.query_scope))

    def headers(self) -> dict[str, str]:
        """HTTP headers for the next query; reads the token file each time so rotation works."""
        if not self.bearer_token_file:
            return {}
        with open(self.bearer_token_file, encoding="utf-8") as f:
            return {"Authorization": f"Bearer {f.read().strip()}"}

    def basic_auth(self) -> tuple[str, str] | None:
        """(user, password) for HTTP basic auth, or None."""
        if not self.username or not self.password_file:
            return None
        with open(self.password_file, encoding="utf-8") as f:
            return self.username, f.read().rstrip("\n")

    def verify(self) -> bool | str:
        """What to pass as TLS verification: a CA bundle path, True, or False when insecure."""
        if self.insecure:
            return False
        return self.ca_file or True


@dataclass(frozen=True)
class ScopeSettings:
    namespaces: tuple[str, ...] = ()
    """Namespaces to watch (globs allowed, as in kopf). Empty means cluster-wide."""

    @property
    def clusterwide(self) -> bool:
        """True when no namespace is named: watch ScalingPolicies everywhere."""
        return not self.namespaces


class MetricsAuth(StrEnum):
    """Who may read /metrics (``foreseer.operator.authn`` does the checking)."""

    NONE = "none"
    """Anyone who reaches the port (the default; the chart's NetworkPolicy limits who can)."""
    KUBERNETES = "kubernetes"
    """Only a bearer token the API server authenticates (TokenReview) and authorises for
    ``get`` on the non-resource URL /metrics (SubjectAccessReview)."""


@dataclass(frozen=True)
class ServerSettings:
    host: str = "0.0.0.0"
    """Address the /metrics and /healthz server binds to."""
    port: int = 8080
    """Port of /metrics and /healthz; 0 picks a free port (used by tests)."""
    metrics_auth: MetricsAuth = MetricsAuth.NONE
    """``none``: /metrics answers whoever reaches the port (limit that with a
    NetworkPolicy). ``kubernetes``: every /metrics request must carry a bearer token that the
    API server authenticates (TokenReview, else 401) and authorises for ``get`` on the
    non-resource URL /metrics (SubjectAccessReview, else 403), as kube-rbac-proxy checks;
    the operator then needs ``create`` on tokenreviews and subjectaccessreviews. /healthz
    stays open either way (the kubelet's probes carry no token)."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {self.port}")
        object.__setattr__(self, "metrics_auth", MetricsAuth(self.metrics_auth))


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "INFO"
    """Python log level name: DEBUG, INFO, WARNING or ERROR."""
    json: bool = False
    """One JSON object per line, for log collectors; plain text otherwise."""

    def __post_init__(self) -> None:
        level = self.level.upper()
        if not isinstance(logging.getLevelName(level), int):
            raise ValueError(f"unknown log level {self.level!r}; use DEBUG, INFO, WARNING or ERROR")
        object.__setattr__(self, "level", level)


@dataclass(frozen=True)
class PeeringSettings:
    name: str = "foreseer"
    """Name of the kopf peering object shared by the replicas of one operator deployment."""
    standalone: bool = False
    """Run without peering (a single replica, or tests). With peering, only the replica
    with the highest priority acts; the others pause until it is gone."""
    priority: int = 0
    """This replica's peering priority; the highest alive one acts."""


@dataclass(frozen=True)
class ShardingSettings:
    shards: int = 0
    """Shards the policies are split into, each held on a coordination.k8s.io Lease by one
    replica; 0 turns sharding off (one replica, or Kopf peering). With sharding on, Kopf
    peering is off: the Leases decide who acts."""
    identity: str = field(default_factory=socket.gethostname)
    """This replica's name on the Leases; unique per replica (a pod's host name is its name)."""
    namespace: str = "default"
    """Where the Leases live (the chart sets the operator's own namespace)."""
    name: str = "foreseer"
    """Prefix of the Lease names and their ``foreseer.dev/sharding`` label: replicas with
    the same name share the shards."""
    lease_seconds: float = 15.0
    """How long a Lease holds without renewal: a lost replica's shards are taken over
    within this plus one renewal period."""
    renew_seconds: float = 5.0
    """How often each replica renews its Leases and rebalances."""

    def __post_init__(self) -> None:
        if self.shards < 0:
            raise ValueError(f"shards must be 0 (off) or more, got {self.shards}")
        if not 0 < self.renew_seconds * 2 <= self.lease_seconds:
            raise ValueError(
                f"the renewal period ({self.renew_seconds:g} s) must be positive and at most "
                f"half the lease duration ({self.lease_seconds:g} s), or a slow renewal "
                "would lose the shards")


@dataclass(frozen=True)
class FittingSettings:
    workers: int = 1
    """Processes that fit models, off the event loop. One leaves the other core to the loop."""
    max_models: int = 2000
    """Fitted models kept in memory (least recently used are dropped and refitted on demand)."""
    policy_memory_mib: float = 16.0
    """Memory one policy may make the operator hold, estimated from its spec (its metrics'
    history grids and fitted models); a policy past it gets Ready=False with reason
    MemoryBudgetExceeded and nothing is read for it. Every policy the CRD admits needs at
    most about 6 MiB, so the default refuses none; lower it to give each tenant less."""

    model_dir: str | None = None
    """Directory of the model store (a volume): fitted models are written there and read
    back after a restart or a shard takeover. None keeps them in memory only."""
    model_key_file: str | None = None
    """File holding the key (16 bytes or more, from a Secret) that authenticates stored
    models; required with ``model_dir``."""

    def __post_init__(self) -> None:
        if (self.model_dir is None) != (self.model_key_file is None):
            raise ValueError("the model store needs both a directory and a key file "
                             "(--model-dir and --model-key-file)")
        if self.policy_memory_mib <= 0:
            raise ValueError(
                f"policy memory budget must be positive, got {self.policy_memory_mib}")
        if self.workers < 1:
            raise ValueError(f"fitting workers must be at least 1, got {self.workers}")
        if self.max_models < 1:
            raise ValueError(f"max models must be at least 1, got {self.max_models}")


@dataclass(frozen=True)
class Settings:
    prometheus: PrometheusSettings = field(default_factory=PrometheusSettings)
    """Where the load metrics come from and how to authenticate."""
    scope: ScopeSettings = field(default_factory=ScopeSettings)
    """Which namespaces to watch."""
    server: ServerSettings = field(default_factory=ServerSettings)
    """The /metrics and /healthz endpoint."""
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    """Log level and format."""
    peering: PeeringSettings = field(default_factory=PeeringSettings)
    """High availability: kopf peering between operator replicas."""
    fitting: FittingSettings = field(default_factory=FittingSettings)
    """The model-fitting process pool and the LRU of fitted models."""
    sharding: ShardingSettings = field(default_factory=ShardingSettings)
    """Scale-out: policies split across replicas by hash, held on Leases."""

    @property
    def peered(self) -> bool:
        """Whether Kopf peering picks the one acting replica: not standalone, and not
        sharded (then the shard Leases decide, and every replica acts on its own share)."""
        return not self.peering.standalone and not self.sharding.shards


def _truthy(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"{text!r} is not a boolean; use true or false")


def _namespaces(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


# (group, field, flag, parse, help): --<flag> and FORESEER_<FLAG> set settings.<group>.<field>.
_Option = tuple[str, str, str, Callable[[str], Any], str]
OPTIONS: tuple[_Option, ...] = (
    ("prometheus", "url", "prometheus-url", str, "Prometheus base URL"),
    ("prometheus", "bearer_token_file", "prometheus-bearer-token-file", str,
     "file with a bearer token for Prometheus"),
    ("prometheus", "username", "prometheus-username", str, "basic-auth user for Prometheus"),
    ("prometheus", "password_file", "prometheus-password-file", str,
     "file with the basic-auth password for Prometheus"),
    ("prometheus", "ca_file", "prometheus-ca-file", str, "CA bundle for Prometheus' TLS"),
    ("prometheus", "insecure", "prometheus-insecure", _truthy, "skip TLS verification (explicit)"),
    ("prometheus", "timeout", "prometheus-timeout", float, "seconds per Prometheus query"),
    ("prometheus", "retries", "prometheus-retries", int, "retries per Prometheus query"),
    ("prometheus", "query_scope", "query-scope", QueryScope,
     "namespace (default): a policy's queries read only its own namespace; cluster: any"),
    ("prometheus", "tenancy_parameter", "prometheus-tenancy-parameter", str,
     "query parameter carrying the policy's namespace to a tenancy proxy (prom-label-proxy)"),
    ("scope", "namespaces", "namespaces", _namespaces,
     "comma-separated namespaces to watch; empty for cluster-wide"),
    ("server", "host", "metrics-host", str, "bind address of /metrics and /healthz"),
    ("server", "port", "metrics-port", int, "port of /metrics and /healthz"),
    ("server", "metrics_auth", "metrics-auth", MetricsAuth,
     "none (default): /metrics is open; kubernetes: only bearer tokens the API server "
     "authenticates and authorises for get on /metrics (TokenReview, SubjectAccessReview)"),
    ("logging", "level", "log-level", str, "DEBUG, INFO, WARNING or ERROR"),
    ("logging", "json", "log-json", _truthy, "log one JSON object per line"),
    ("peering", "name", "peering-name", str, "kopf peering name shared by the replicas"),
    ("peering", "standalone", "standalone", _truthy, "run without peering"),
    ("peering", "priority", "priority", int, "this replica's peering priority"),
    ("fitting", "workers", "fit-workers", int, "processes that fit models"),
    ("fitting", "max_models", "max-models", int, "fitted models kept in memory"),
    ("fitting", "policy_memory_mib", "policy-memory-budget-mib", float,
     "MiB one policy's histories and models may hold"),
    ("fitting", "model_dir", "model-dir", str,
     "directory that keeps fitted models across restarts (a volume)"),
    ("fitting", "model_key_file", "model-key-file", str,
     "file with the key that authenticates stored models"),
    ("sharding", "shards", "shards", int,
     "shards the policies are split into across replicas, held on Leases; 0: off"),
    ("sharding", "identity", "shard-identity", str, "this replica's name on the Leases"),
    ("sharding", "namespace", "lease-namespace", str, "namespace of the shard Leases"),
    ("sharding", "name", "lease-name", str, "prefix of the shard Lease names"),
    ("sharding", "lease_seconds", "lease-seconds", float, "seconds a Lease holds unrenewed"),
    ("sharding", "renew_seconds", "lease-renew-seconds", float, "seconds between renewals"),
)

_BOOLEAN_FLAGS = {"prometheus-insecure", "log-json", "standalone"}


def env_name(flag: str) -> str:
    """The variable behind a flag: --prometheus-url is FORESEER_PROMETHEUS_URL."""
    return ENV_PREFIX + flag.upper().replace("-", "_")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per setting; the help names the environment variable it overrides."""
    for group, name, flag, _, help_text in OPTIONS:
        env = env_name(flag)
        if flag in _BOOLEAN_FLAGS:
            parser.add_argument(f"--{flag}", dest=f"{group}__{name}", default=None,
                                action=argparse.BooleanOptionalAction, help=f"{help_text} [{env}]")
        else:
            parser.add_argument(f"--{flag}", dest=f"{group}__{name}", default=None,
                                metavar=flag.rsplit("-", 1)[-1].upper(),
                                help=f"{help_text} [{env}]")


def load(
    args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Settings from CLI flags over FORESEER_* variables over defaults.

    Raises ValueError naming the flag or variable when a value does not parse.
    """
    environ = os.environ if environ is None else environ
    groups: dict[str, dict[str, Any]] = {f.name: {} for f in dataclasses.fields(Settings)}
    for group, name, flag, parse, _ in OPTIONS:
        env = env_name(flag)
        given = getattr(args, f"{group}__{name}", None) if args is not None else None
        source, raw = (f"--{flag}", given) if given is not None else (env, environ.get(env))
        if raw is None:
            continue
        try:
            groups[group][name] = raw if isinstance(raw, bool) else parse(raw)
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None
    built = {}
    for f in dataclasses.fields(Settings):
        cls = f.default_factory
        built[f.name] = cls(**groups[f.name])  # type: ignore[operator]
    return Settings(**built)
