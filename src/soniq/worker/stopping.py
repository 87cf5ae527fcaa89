"""Sleeping in a way that a shutdown can interrupt."""

from __future__ import annotations

import asyncio
import contextlib


async def nap(stop: asyncio.Event, seconds: float) -> None:
    """Sleep for ``seconds``, or less if ``stop`` is set meanwhile.

    Background loops use this rather than relying on task cancellation alone: psycopg
    turns a cancelled query into ``QueryCanceled``, an ``OperationalError``, which an
    outage handler would otherwise take for a database problem and retry.
    """
    with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
