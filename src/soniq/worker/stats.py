"""Counting finished attempts for ``soniq status``: in memory, written every few seconds.

The status's finished figures (done, cancelled and failed in the last hour and minute)
come from ``soniq_stats``, one row per minute, queue and task name, so that reading
them costs the same however many finished rows ``soniq_jobs`` keeps. Each worker counts
its attempts here (no I/O per job) and adds the counts to the current minute's rows
with one upsert every :data:`FLUSH_INTERVAL` seconds and when it stops. Counts that
could not be written are kept for the next flush; a worker killed outright loses at
most one interval's counts, which only these figures ever show.
"""

from __future__ import annotations

import asyncio
import json
import logging

from soniq.storage.store import Store
from soniq.worker.runner import ClaimedJob
from soniq.worker.stopping import nap

logger = logging.getLogger("soniq.worker")

#: Seconds between two writes of a worker's counts.
FLUSH_INTERVAL = 5.0

# The column of each outcome kind (Worker.outcomes' names); a snooze is not counted:
# the attempt is refunded and the job runs again.
_COLUMN = {"done": 0, "retried": 1, "dead_lettered": 2, "cancelled": 3}
_NAMES = ("done", "retried", "dead", "cancelled")


class OutcomeStats:
    """One worker's counts of finished attempts per (queue, task name), not yet written."""

    def __init__(self, store: Store, interval: float = FLUSH_INTERVAL) -> None:
        self.store = store
        self.interval = interval
        # (queue, job_name) -> [done, retried, dead, cancelled, runtime_sum, runtime_max]
        self._pending: dict[tuple[str, str], list[float]] = {}

    def record(self, job: ClaimedJob, kind: str, seconds: float) -> None:
        """Count one attempt of ``job`` that ended as ``kind`` after ``seconds``."""
        column = _COLUMN.get(kind)
        if column is None:
            return
        key = (job.queue, job.job_name)
        counts = self._pending.get(key)
        if counts is None:
            counts = self._pending[key] = [0, 0, 0, 0, 0.0, 0.0]
        counts[column] += 1
        counts[4] += seconds
        if seconds > counts[5]:
            counts[5] = seconds

    async def run(self, closing: asyncio.Event) -> None:
        """Write the counts every interval until ``closing`` (the last write is :meth:`flush`
        in the worker's shutdown)."""
        while not closing.is_set():
            await nap(closing, self.interval)
            if not closing.is_set():
                await self.flush()

    async def flush(self) -> bool:
        """Write the counts now; False (and the counts kept) if the database said no."""
        if not self._pending:
            return True
        batch, self._pending = self._pending, {}
        # Sorted: concurrent upserts then lock their rows in one order (no deadlock).
        rows = [
            {
                "queue": queue,
                "job_name": name,
                **dict(zip(_NAMES, counts[:4], strict=True)),
                "runtime_sum": counts[4],
                "runtime_max": counts[5],
            }
            for (queue, name), counts in sorted(batch.items())
        ]
        try:
            await self.store.workers.flush_stats(json.dumps(rows))
        except (*self.store.unavailable, *self.store.errors) as exc:
            logger.warning("could not write job statistics (%s); keeping them", str(exc).strip())
            self._merge(batch)
            return False
        return True

    def _merge(self, batch: dict[tuple[str, str], list[float]]) -> None:
        for key, counts in batch.items():
            mine = self._pending.setdefault(key, [0, 0, 0, 0, 0.0, 0.0])
            for i in range(5):
                mine[i] += counts[i]
            mine[5] = max(mine[5], counts[5])
