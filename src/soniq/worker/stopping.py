"""Sleeping in a way that a shutdown can interrupt."""

from __future__ import annotations

import asyncio


async def nap(stop: asyncio.Event, seconds: float) -> None:
    """Sleep for ``seconds``, or less if ``stop`` is set meanwhile.

    Background loops use this rather than relying on task cancellation alone: psycopg
    turns a cancelled query into ``QueryCanceled``, an ``OperationalError``, which an
    outage handler would otherwise take for a database problem and retry.
    """
    await wait_set(stop, seconds)


async def wait_set(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until ``event`` is set or ``timeout`` seconds (None: no limit) pass; whether
    it is set.

    Not ``asyncio.wait_for(event.wait(), timeout)``: before Python 3.12 that drops a
    cancellation which lands in the same loop turn as the event is set, so a
    cancelled worker could go on running until cancelled again.
    """
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait((waiter,), timeout=timeout)
    finally:
        waiter.cancel()
    return event.is_set()
