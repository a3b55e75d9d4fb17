"""Events are posted off the tick path, as Kopf posts its own: a tick only queues them.

A slow API server then delays an Event, never a decision. The queue is bounded; when it is
full the newest Event is dropped (and counted), since Events are for people and the status
carries the same facts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

logger = logging.getLogger(__name__)

QUEUE_LIMIT = 1000
"""Events waiting to be posted, at most (about one per policy at 1000 policies)."""


class Poster(Protocol):
    async def post_event(self, body: Mapping[str, Any], *, reason: str, message: str,
                         warning: bool = False) -> None: ...


@dataclass(frozen=True)
class _Event:
    body: Mapping[str, Any]
    reason: str
    message: str
    warning: bool


class EventQueue:
    """Queues Events and posts them, one at a time, from a task of its own."""

    def __init__(self, poster: Poster, *, limit: int = QUEUE_LIMIT,
                 on_posted: Callable[[bool], None] | None = None,
                 on_dropped: Callable[[], None] | None = None) -> None:
        """`poster`: what posts one Event (the Cluster adapter). `on_posted(warning)` and
        `on_dropped()` are told of each Event posted or dropped."""
        self._poster = poster
        self._queue: asyncio.Queue[_Event] = asyncio.Queue(limit)
        self._task: asyncio.Task[None] | None = None
        self._on_posted = on_posted
        self._on_dropped = on_dropped

    def post(self, body: Mapping[str, Any], *, reason: str, message: str,
             warning: bool = False) -> None:
        """Queue an Event about `body`; returns at once. Must be called on the event loop."""
        try:
            self._queue.put_nowait(_Event(dict(body), reason, message, warning))
        except asyncio.QueueFull:
            logger.warning("dropped the event %s (%s): the posting queue is full", reason,
                           message)
            if self._on_dropped is not None:
                self._on_dropped()
            return
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until every queued Event was posted, at most `timeout` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)

    async def close(self, timeout: float = 5.0) -> None:
        """Post what is queued (within `timeout`), then stop."""
        await self.flush(timeout)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _drain(self) -> None:
        while not self._queue.empty():
            event = self._queue.get_nowait()
            try:
                await self._poster.post_event(event.body, reason=event.reason,
                                              message=event.message, warning=event.warning)
                if self._on_posted is not None:
                    self._on_posted(event.warning)
            except Exception:  # a bug in posting must not stop the Events after it
                logger.exception("posting the event %s failed", event.reason)
            finally:
                self._queue.task_done()
