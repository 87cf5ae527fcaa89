"""The workers' retention sweep: delete old finished jobs a batch at a time.

Every SONIQ_PRUNE_INTERVAL seconds each worker starts a run. Each batch takes a
transaction-scoped PostgreSQL advisory lock; a worker that finds it taken ends its run
(or skips its turn), so workers do not compete for the same rows. A run deletes
batches (oldest first) until nothing old is left or it has done
``MAX_BATCHES_PER_RUN``, pausing after each batch for as long as the batch took, so
the sweep uses at most about half of one connection and claims keep their share of
the server. A run that stops at the cap leaves a backlog: the next one starts after
``BACKLOG_PAUSE`` instead of a whole interval.
"""

from __future__ import annotations

import asyncio
import logging

from soniq.ops.retention import BATCH_SIZE, prune_age
from soniq.settings import SoniqSettings
from soniq.storage.backend import SWEEP_LOCK_KEY
from soniq.storage.store import Store
from soniq.worker.stopping import nap

logger = logging.getLogger("soniq.retention")

__all__ = ["SWEEP_LOCK_KEY", "Pruner"]

#: Batches one run may delete before it yields (100,000 rows at the default size).
MAX_BATCHES_PER_RUN = 100
#: Seconds between runs while a backlog remains.
BACKLOG_PAUSE = 1.0
#: The shortest pause between two batches of a run, in seconds.
MIN_BATCH_PAUSE = 0.01


class Pruner:
    """Sweeps finished jobs for one worker; :meth:`run` is its background loop."""

    def __init__(
        self,
        store: Store,
        settings: SoniqSettings,
        *,
        batch_size: int = BATCH_SIZE,
        max_batches: int = MAX_BATCHES_PER_RUN,
    ) -> None:
        self.store = store
        self.settings = settings
        self.batch_size = batch_size
        self.max_batches = max_batches
        self.backlog = False  # did the last run stop at the cap with rows left?

    @property
    def enabled(self) -> bool:
        """False when SONIQ_PRUNE_INTERVAL is 0 or retention is off."""
        return self.settings.prune_interval > 0 and self.settings.finished_job_retention is not None

    async def run(self, closing: asyncio.Event) -> None:
        """Sweep at start and then every interval (sooner after a capped run), until ``closing``."""
        if not self.enabled:
            return
        while not closing.is_set():
            try:
                await self.sweep(closing)
            except self.store.errors as exc:
                logger.warning("pruning finished jobs failed (%s); retrying", str(exc).strip())
            except Exception:
                logger.exception("pruning finished jobs failed")
            pause = BACKLOG_PAUSE if self.backlog else self.settings.prune_interval
            await nap(closing, pause)

    async def sweep(self, stop: asyncio.Event | None = None) -> int | None:
        """One run; the number of rows deleted, or None if another worker is sweeping.

        ``stop`` ends the run between two batches.
        """
        age = prune_age(self.settings)
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        cutoff = await self.store.jobs.prune_cutoff(age)
        deleted = batches = 0
        while True:
            started = loop.time()
            count = await self.store.jobs.prune_batch(cutoff, self.batch_size, exclusive=True)
            if count is None:  # another worker is sweeping
                if batches == 0:
                    return None
                full = False
                break
            deleted += count
            batches += 1
            full = count == self.batch_size
            if not full or batches >= self.max_batches:
                break
            await nap(stop, max(MIN_BATCH_PAUSE, loop.time() - started))
            if stop.is_set():
                break
        self._report(deleted, batches, age, capped=full and batches >= self.max_batches)
        return deleted

    def _report(self, deleted: int, batches: int, age: float, *, capped: bool) -> None:
        extra = {"deleted": deleted, "batches": batches, "older_than": age}
        if capped and not self.backlog:
            logger.info(
                "pruning is behind: deleted %d finished job(s) and more remain; "
                "continuing every %gs until caught up",
                deleted,
                BACKLOG_PAUSE,
                extra=extra,
            )
        elif self.backlog and not capped:
            logger.info("pruning caught up (%d more deleted)", deleted, extra=extra)
        else:
            logger.debug("pruned %d finished job(s) older than %gs", deleted, age, extra=extra)
        self.backlog = capped
