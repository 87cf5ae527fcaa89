"""The async forms of the few concurrency primitives the generated sources use.

``tools/async_to_sync.py`` maps this module to :mod:`soniq_sync._acompat`, which
holds their blocking twins under the same names, instead of renaming ``asyncio``
wholesale. A source it converts imports its primitives from here, never from
``asyncio``: the generator's check refuses a source that does.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["Lock", "call_hook", "cancels_asked", "keep_cancel", "sleep"]

#: A mutual-exclusion lock held across ``await`` (``async with lock:``).
Lock = asyncio.Lock

#: Wait ``seconds`` without blocking the event loop (``await sleep(0.1)``).
sleep = asyncio.sleep


async def call_hook(func: Callable[..., Any], *args: Any) -> Any:
    """Call ``func(*args)``; await the result if it is awaitable (an ``async def``)."""
    result = func(*args)
    if inspect.isawaitable(result):
        return await result
    return result


def cancels_asked() -> int:
    """How many cancellations of the current task are pending (Python 3.11+; else 0)."""
    task = asyncio.current_task()
    if task is None or sys.version_info < (3, 11):
        return 0
    return task.cancelling()


def keep_cancel(asked_before: int) -> None:
    """Raise ``CancelledError`` if the current task was cancelled since
    :func:`cancels_asked` gave ``asked_before`` and the cancellation was dropped.

    psycopg_pool waits for a free connection with ``asyncio.wait_for``, which before
    Python 3.12 drops a cancellation landing as the wait ends: the task got its
    connection and never saw the cancel, so a cancelled worker ran on.
    """
    if cancels_asked() > asked_before:
        raise asyncio.CancelledError
