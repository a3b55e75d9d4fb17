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
from foreseer.operator.settings import LoggingSettings, Settings

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
    runtime: handlers.Runtime | None = None,
) -> None:
    """Run the operator until ``stop_flag`` is set (or for ever, until cancelled).

    Credentials come from Kopf's discovery: the in-cluster service account, else
    the kubeconfig (``KUBECONFIG``). ``runtime`` lets tests and the benchmark look inside.
    """
    runtime = runtime or handlers.Runtime.create(config)
    registry = handlers.build_registry()
    try:
        server = await telemetry.serve(runtime.telemetry, runtime.health,
                                       config.server.host, config.server.port)
    except OSError as exc:
        await runtime.close()
        raise StartupError(f"cannot serve /metrics and /healthz on {config.server.host}:"
                           f"{config.server.port}: {exc.strerror or exc}") from exc
    runtime.metrics_port = telemetry.bound_port(server)
    logger.info("serving /metrics and /healthz on port %d", runtime.metrics_port)
    try:
        await kopf.operator(
            registry=registry,
            clusterwide=config.scope.clusterwide,
            namespaces=list(config.scope.namespaces),
            standalone=config.peering.standalone,
            priority=config.peering.priority,
            peering_name=config.peering.name,
            memo=kopf.Memo(runtime=runtime),
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )
    finally:
        runtime.health.ready = False
        await server.cleanup()
        await runtime.close()
