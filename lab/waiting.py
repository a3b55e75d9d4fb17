"""Deadline-bounded waiting: tests poll for an outcome, never sleep for a fixed time."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

T = TypeVar("T")


@overload
async def until(condition: Callable[[], Awaitable[T]], timeout: float,
                what: str = ..., interval: float = ...) -> T: ...
@overload
async def until(condition: Callable[[], T], timeout: float,
                what: str = ..., interval: float = ...) -> T: ...
async def until(condition: Callable[[], T | Awaitable[T]], timeout: float,
                what: str = "the condition", interval: float = 0.05) -> T:
    """Poll `condition` until it returns something truthy (returned); TimeoutError after
    `timeout` seconds, naming `what` was awaited."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if loop.time() >= deadline:
            raise TimeoutError(f"{what} did not happen within {timeout}s")
        await asyncio.sleep(interval)
