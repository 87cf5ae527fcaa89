"""The blocking twins of :mod:`soniq._acompat`: the same names, for threads.

Hand-written. The generated modules import their primitives from here, where the
async source imports them from :mod:`soniq._acompat`.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

__all__ = ["Lock", "call_hook", "cancels_asked", "keep_cancel", "sleep"]

#: A mutual-exclusion lock shared by threads (``with lock:``).
Lock = threading.Lock

#: Block the calling thread for ``seconds``.
sleep = time.sleep


def call_hook(func: Callable[..., Any], *args: Any) -> Any:
    """Call ``func(*args)``; an awaitable result (an ``async def``) is run to completion
    on an event loop of its own, so blocking code can call async plugin hooks. Not from
    a thread that runs an event loop."""
    result = func(*args)
    if inspect.isawaitable(result):
        return anyio.run(_wait, result)
    return result


async def _wait(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def cancels_asked() -> int:
    """Threads are not cancelled: always 0 (see ``soniq._acompat``)."""
    return 0


def keep_cancel(asked_before: int) -> None:
    """Nothing to keep: threads are not cancelled (see ``soniq._acompat``)."""
