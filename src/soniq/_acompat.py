"""The async forms of the few concurrency primitives the generated sources use.

``tools/async_to_sync.py`` maps this module to :mod:`soniq_sync._acompat`, which
holds their blocking twins under the same names, instead of renaming ``asyncio``
wholesale. A source it converts imports its primitives from here, never from
``asyncio``: the generator's check refuses a source that does.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["Lock", "call_hook", "sleep"]

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
