"""Small test utilities shared by every test suite.

Synchronise on observable state, never on a bare sleep: poll a predicate until it holds
or a deadline passes, and fail with a message that says what was being waited for.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

T = TypeVar("T")

DEFAULT_TIMEOUT = 10.0
DEFAULT_INTERVAL = 0.02


def _describe(predicate: Callable[..., object], message: str | None) -> str:
    if message:
        return message
    return getattr(predicate, "__qualname__", None) or repr(predicate)


async def wait_for(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - a deadline is the point here
    interval: float = DEFAULT_INTERVAL,
    message: str | None = None,
) -> T:
    """Poll ``predicate`` (sync or async) until it returns a truthy value; return it.

    Raises AssertionError naming the condition and its last value if ``timeout``
    seconds pass first. Exceptions raised by the predicate propagate immediately.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {_describe(predicate, message)} "
                f"(last value: {result!r})"
            )
        await anyio.sleep(interval)


def wait_for_sync(
    predicate: Callable[[], T],
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = DEFAULT_INTERVAL,
    message: str | None = None,
) -> T:
    """Blocking twin of :func:`wait_for` for synchronous tests (e.g. ``soniq_sync``)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {_describe(predicate, message)} "
                f"(last value: {result!r})"
            )
        time.sleep(interval)
