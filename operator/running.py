"""`foreseer run` and `python -m foreseer.operator`: start Kopf and the /metrics + /healthz server.

Both run in one event loop; a separate process pool fits the models, so the loop
never blocks on a fit.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import logging
import os
import sys
import threading

import kopf

from foreseer.operator import handlers, settings, telemetry
from foreseer.operator.authn import MetricsGuard
from foreseer.operator.runtime import Runtime
from foreseer.operator.settings import LoggingSettings, MetricsAuth, ScopeSettings, Settings

logger = logging.getLogger(__name__)

MALLOC_ARENAS = 2
"""glibc malloc arenas the operator's threads share (unless ``MALLOC_ARENA_MAX`` says
otherwise). glibc gives each thread that allocates while another does its own arena, up
to eight per core, and memory freed in one arena serves only that arena: in the operator
benchmark at 1000 policies (600 of them with a model), the thread pools (Prometheus
queries, Kubernetes calls, forecasting, /metrics) had spread the allocations over about
ten arenas holding some 190 MB (/proc/PID/smaps)."""
M_ARENA_MAX = -8
"""mallopt's parameter number for the arena limit (glibc's malloc.h)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    settings.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        loaded = settings.load(args)
    except ValueError as exc:
        print(f"foreseer run: {exc}", file=sys.stderr)
        return 2
    configure_logging(loaded.logging)
    limit_malloc_arenas(MALLOC_ARENAS)
    # Kopf installs its own SIGINT/SIGTERM handlers and stops gracefully on them.
    try:
        asyncio.run(operate(loaded))
    except StartupError as exc:
        print(f"foreseer run: {exc}", file=sys.stderr)
        return 1
    return 0


def limit_malloc_arenas(arenas: int) -> bool:
    """Cap glibc's malloc arenas before the operator starts its threads; False when the
    C library is not glibc or ``MALLOC_ARENA_MAX`` is set (the user's choice wins)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False  # musl and others: their allocators have no arenas to cap
    return bool(mallopt(M_ARENA_MAX, arenas))


NAMESPACE_PATTERN_CHARACTERS = frozenset("*?!,")
"""Characters that make a ``--namespaces`` entry a Kopf pattern rather than a name (Kopf's
own test, in ``kopf._cogs.structs.references.select_specific_namespaces``)."""


def is_exact_namespace(namespace: str) -> bool:
    """True when Kopf takes ``namespace`` as a name, not a glob or negation to match."""
    return NAMESPACE_PATTERN_CHARACTERS.isdisjoint(namespace)


def kopf_settings(scope: ScopeSettings) -> kopf.OperatorSettings:
    """Kopf's settings before the startup handler adds its own (peering, posting, finalizer).

    Namespaced with exact names only (the chart's ``watchNamespaces`` allows nothing else),
    Kopf's scanning is off. With scanning on, Kopf lists and watches *every* namespace at
    cluster scope to match its namespaces against, even when they are exact names
    (``kopf/_core/reactor/observation.py``: ``namespace_observer`` lists them whenever
    ``not settings.scanning.disabled and not clusterwide``), and it watches CRDs cluster-wide;
    a namespaced release has neither right, so every request was refused with 403, retried
    with backoff and only then given up. Off, Kopf serves exactly the named namespaces and
    asks for nothing cluster-wide; the cost is that a CRD created after the start is only
    seen on a restart (Helm installs the chart's CRDs before the operator starts). With a
    glob, or cluster-wide, scanning stays on: a glob needs the namespace listing (and the
    list/watch rights on namespaces), and cluster-wide Kopf lists no namespaces at all.
    """
    settings = kopf.OperatorSettings()
    settings.scanning.disabled = (not scope.clusterwide
                                  and all(map(is_exact_namespace, scope.namespaces)))
    return settings


class StartupError(Exception):
    """The operator cannot start (e.g. its port is taken); the message says why."""


def configure_logging(config: LoggingSettings) -> None:
    """Kopf's formatters (they add the object a message is about), at the chosen level."""
    log_format = kopf.LogFormat.JSON if config.json else kopf.LogFormat.FULL
    kopf.configure(debug=config.level == "DEBUG", log_format=log_format)
    logging.getLogger().setLevel(config.level)


async def operate(
    config: Settings,
    *,
    stop_flag: asyncio.Event | threading.Event | None = None,
    ready_flag: asyncio.Event | threading.Event | None = None,
    runtime: Runtime | None = None,
) -> None:
    """Run the operator until ``stop_flag`` is set (or for ever, until cancelled).

    Credentials come from Kopf's discovery: the in-cluster service account, else
    the kubeconfig (``KUBECONFIG``). ``runtime`` lets tests and the benchmark look inside.
    """
    runtime = runtime or Runtime.create(config)
    registry = handlers.build_registry()
    try:
        guard = (MetricsGuard(runtime.cluster)
                 if config.server.metrics_auth is MetricsAuth.KUBERNETES else None)
        server = await telemetry.serve(runtime.telemetry, runtime.health,
                                       config.server.host, config.server.port, guard)
    except OSError as exc:
        await runtime.close()
        raise StartupError(f"cannot serve /metrics and /healthz on {config.server.host}:"
                           f"{config.server.port}: {exc.strerror or exc}") from exc
    runtime.metrics_port = telemetry.bound_port(server)
    logger.info("serving /metrics and /healthz on port %d (/metrics auth: %s)",
                runtime.metrics_port, config.server.metrics_auth)
    leases_stopped = asyncio.Event()
    holding = (asyncio.create_task(runtime.sharder.run(leases_stopped), name="shard leases")
               if runtime.sharder is not None else None)
    try:
        await kopf.operator(
            registry=registry,
            settings=kopf_settings(config.scope),
            clusterwide=config.scope.clusterwide,
            namespaces=list(config.scope.namespaces),
            standalone=not config.peered,
            priority=config.peering.priority,
            peering_name=config.peering.name,
            memo=kopf.Memo(runtime=runtime),
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )
    finally:
        runtime.health.ready = False
        if holding is not None and runtime.sharder is not None:
            leases_stopped.set()
            await holding
            await runtime.sharder.release_all()
        await server.cleanup()
        await runtime.close()
