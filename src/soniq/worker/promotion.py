"""Bringing delayed jobs into the claim once their time has come.

A job written with a ``scheduled_at`` still to come (``schedule()``, a retry or snooze
with a delay) is *delayed*: it waits outside the claim's index, so that a claim never
walks jobs that are not due (see migration 0005). Each worker promotes the delayed
jobs that have fallen due, oldest first, then sleeps until the next one is due. It
learns of new ones from the statement itself (``next_due``), from its own retries and
snoozes, and from the ``soniq_delayed`` notifications producers send; without those
(polling mode, SQLite) it looks again every poll interval at the latest.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from soniq.storage.store import Store
from soniq.worker.stopping import nap, wait_set

logger = logging.getLogger("soniq.worker")

#: Jobs promoted per statement; a full batch is followed by the next one at once.
BATCH = 1000
#: The shortest sleep before a job that falls due next (seconds).
MIN_SLEEP = 0.001


class Promoter:
    """Promotes due delayed jobs for one worker; :meth:`run` is its background loop."""

    def __init__(
        self,
        store: Store,
        poll_interval: float,
        retry_delay: float,
        on_promoted: Callable[[], None],
        batch: int = BATCH,
    ) -> None:
        self.store = store
        self.poll_interval = poll_interval
        self.retry_delay = retry_delay
        self.on_promoted = on_promoted
        self.batch = batch
        self._wake_at: float | None = None  # loop time of the next look, while asleep
        self._hint: float | None = None  # the earliest due time announced meanwhile
        self._poke = asyncio.Event()

    async def promote_due(self) -> tuple[int, float | None]:
        """Promote every delayed job due now; the count, and seconds until the next one.

        ``None`` for the second figure: no delayed job is waiting.
        """
        total = 0
        while True:
            moved, _woke, next_due = await self.store.jobs.promote_due(self.batch)
            total += moved
            if moved < self.batch:
                break
        if total:
            self.on_promoted()
        return total, next_due

    def expect(self, seconds: float) -> None:
        """A delayed job falls due in ``seconds``: look then, if that is sooner."""
        due = asyncio.get_running_loop().time() + max(seconds, 0.0)
        if self._hint is None or due < self._hint:
            self._hint = due
        if self._wake_at is not None and due < self._wake_at:
            self._wake_at = due
            self._poke.set()

    def poke(self) -> None:
        """Look now (e.g. once LISTEN is up: jobs written before it were not announced)."""
        self.expect(0.0)

    async def run(self, closing: asyncio.Event) -> None:
        """Promote, then sleep until the next job falls due, until ``closing``."""
        loop = asyncio.get_running_loop()
        while not closing.is_set():
            try:
                moved, next_due = await self.promote_due()
            except self.store.errors as exc:
                logger.warning("cannot promote delayed jobs (%s); retrying", str(exc).strip())
                await nap(closing, self.retry_delay)
                continue
            if moved:
                logger.debug("promoted %d delayed job(s) now due", moved)
            pause = self.poll_interval if next_due is None else min(self.poll_interval, next_due)
            wake_at = loop.time() + max(MIN_SLEEP, pause)
            # A job announced while the statement ran may be one it did not see.
            hint, self._hint = self._hint, None
            self._wake_at = wake_at if hint is None else min(wake_at, hint)
            await self._sleep(closing)

    async def _sleep(self, closing: asyncio.Event) -> None:
        """Until ``_wake_at`` (which ``expect`` and ``poke`` may bring forward) or ``closing``."""
        loop = asyncio.get_running_loop()
        try:
            while not closing.is_set():
                assert self._wake_at is not None
                left = self._wake_at - loop.time()
                if left <= 0:
                    return
                self._poke.clear()
                await wait_set(self._poke, left)
        finally:
            self._wake_at = None
