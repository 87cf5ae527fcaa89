"""Waiting in a test for something to become true, with a deadline (no bare sleeps)."""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable

import anyio


async def wait_until(
    predicate: Callable[[], object | Awaitable[object]],
    *,
    timeout: float = 2.0,  # noqa: ASYNC109 - the original's signature
    poll: float = 0.01,
    message: str | None = None,
) -> None:
    """Call ``predicate`` (plain or async) every ``poll`` seconds until it returns
    something true; after ``timeout`` seconds, raise ``AssertionError`` with
    ``message`` (or one naming the predicate)."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = predicate()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() >= deadline:
            name = getattr(predicate, "__qualname__", repr(predicate))
            raise AssertionError(message or f"{name} was not true within {timeout:g}s")
        await anyio.sleep(poll)
