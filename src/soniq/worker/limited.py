"""The worker's side of concurrency and rate limits (PostgreSQL only).

Limited jobs (a ``limit_key`` on the row) are outside the global claim's index; the
worker takes them with a claim of their own, ``soniq_claim_limited`` (migrations
0010 and 0011), which admits a job only while its key is under its limits and serialises
admission per key. This module decides when that claim runs and how large it is,
keeps its round-robin cursor, and knows when a key held back by its rate or a block
becomes eligible again. The SQL does the counting; nothing here can drift.

Queues with limits of their own (gated queues, ``app.queues.set_limits``) are passed
by every other claim; ``soniq_claim_gated`` takes their jobs, keyed or not, and this
class runs it too whenever the worker serves a gated queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from soniq.core.registry import JobRegistry
from soniq.errors import LIMITS_NEED_READ_COMMITTED
from soniq.storage.records import ClaimedJob
from soniq.storage.store import Store
from soniq.worker.stopping import nap

logger = logging.getLogger("soniq.worker")


class LimitedClaims:
    """When and how much a worker claims of limited jobs.

    The claim runs when this worker's own tasks declare limits, or when a probe (at
    most once per ``poll_interval``) finds limited jobs due, so a fleet that uses no
    limits pays one cheap probe per poll interval and nothing per job.
    """

    def __init__(
        self,
        store: Store,
        registry: JobRegistry,
        worker_id: str,
        queues: Sequence[str] | None,
        *,
        keys_per_claim: int,
        poll_interval: float,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.registry = registry
        self.worker_id = worker_id
        self.queues = list(queues) if queues else None
        self.keys_per_claim = keys_per_claim
        self.poll_interval = poll_interval
        self._clock = clock
        #: The round-robin cursor: the claim starts with the key after this one.
        self.cursor: str | None = None
        #: When a key held back by its rate or a block is eligible (loop clock), or None.
        self.eligible_at: float | None = None
        #: Did the last global claim get all it asked for (unlimited jobs waiting)?
        self.others_waiting = True
        self._declared = bool(registry.limit_groups())
        self._probed_at = -1e18
        self._waiting = False
        self._refused_until = -1e18
        #: Whether new jobs are announced to this worker (LISTEN is up): then a claim
        #: that found no limited job at all is not repeated until one is announced
        #: (or for a poll interval at most).
        self.listening: Callable[[], bool] = lambda: False
        self._announcements = 0
        self._idle_until = -1e18
        #: The gated queues this worker serves, as it last read them (see PausedQueues).
        self.gated: Callable[[], list[str]] = list
        self._gated_cursor: str | None = None
        self._gated_idle_until = -1e18
        # When a key (keyed claim) or a gated queue or key (gated claim) held back by
        # its rate or a block is eligible, each as its claim last said.
        self._eligible: dict[str, float | None] = {}

    @property
    def declared(self) -> bool:
        """Whether this worker's own tasks declare limits."""
        return self._declared

    async def declare(self) -> None:
        """Write the limit groups this worker's tasks declare (at start), keeping an
        operator's runtime limits."""
        groups = self.registry.limit_groups()
        if groups:
            await self.store.limits.declare(groups)

    def announced(self) -> None:
        """Jobs were announced (a NOTIFY: new, promoted, requeued, or freed slots)."""
        self._announcements += 1
        self._idle_until = -1e18
        self._gated_idle_until = -1e18

    async def wanted(self) -> bool:
        """Whether to run the limited claim now."""
        now = self._clock()
        if now < self._refused_until:
            return False
        return self._gated_wanted(now) or await self._keyed_wanted(now)

    def _gated_wanted(self, now: float) -> bool:
        return bool(self.gated()) and not (now < self._gated_idle_until and self.listening())

    async def _keyed_wanted(self, now: float) -> bool:
        if now < self._idle_until and self.listening():
            return False
        if self.declared:
            return True
        if now - self._probed_at >= self.poll_interval:
            self._probed_at = now
            self._waiting = await self.store.limits.waiting()
        return self._waiting

    def share(self, free: int, want: int) -> int:
        """How many of ``want`` jobs to ask the limited claim for, with ``free`` slots
        free now: never more than the free slots (a limited job held ready, not
        running, would hold its key's slot), and about half of them while unlimited
        jobs are waiting too, so that limited backlog never keeps them from the other
        half. When the last global claim found fewer jobs than it asked for, all the
        free slots may go to limited jobs (the global claim still asks for one or
        more, so unlimited jobs that arrive are seen at the next claim)."""
        free = max(free, 0)
        return min(want, (free + 1) // 2 if self.others_waiting else free)

    async def claim(self, limit: int) -> list[ClaimedJob]:
        """Claim up to ``limit`` limited jobs, those of the gated queues first; [] when
        none may start now."""
        asked_at = self._clock()  # wake_in counts from the claim, not from its reply
        heard = self._announcements
        jobs: list[ClaimedJob] = []
        try:
            if self._gated_wanted(asked_at):
                jobs = await self._claim_gated(limit, asked_at, heard)
            if len(jobs) < limit and await self._keyed_wanted(asked_at):
                jobs += await self._claim_keyed(limit - len(jobs), asked_at, heard)
        except self.store.errors as exc:
            if jobs:  # the gated claim's jobs are this worker's now: start them
                logger.error("cannot claim limited jobs (%s)", str(exc).strip())
                return jobs
            if LIMITS_NEED_READ_COMMITTED not in str(exc):
                raise
            # The server refused to over-admit: say why, and look again later.
            self._refused_until = self._clock() + self.poll_interval
            logger.error(
                "%s: the worker's connections run at an isolation level above READ "
                "COMMITTED (default_transaction_isolation), where a limited claim would "
                "admit jobs past their limits; limited jobs are not claimed until it is "
                "READ COMMITTED again",
                LIMITS_NEED_READ_COMMITTED,
            )
            return jobs
        ends = [end for end in self._eligible.values() if end is not None]
        self.eligible_at = min(ends) if ends else None
        return jobs

    async def _claim_keyed(self, limit: int, asked_at: float, heard: int) -> list[ClaimedJob]:
        got = await self.store.jobs.claim_limited(
            self.worker_id, self.queues, self.cursor, self.keys_per_claim, limit
        )
        self.cursor = got.cursor
        # No key at all had due limited jobs (the walk found none), and none were
        # announced while the claim looked (it may have missed those): wait for news.
        if got.cursor is None and not got.jobs and heard == self._announcements:
            self._idle_until = asked_at + self.poll_interval
        self._eligible["keyed"] = _end(asked_at, got.wake_in)
        if got.jobs and not self.declared:
            self._waiting = True  # keep claiming while there is limited work
        return got.jobs

    async def _claim_gated(self, limit: int, asked_at: float, heard: int) -> list[ClaimedJob]:
        got = await self.store.jobs.claim_gated(
            self.worker_id, self.gated(), self._gated_cursor, self.keys_per_claim, limit
        )
        self._gated_cursor = got.cursor
        # Nothing to start, and nothing that frees up by time alone: a job that ends
        # (whose slot is announced) or a new job is what can change that.
        if not got.jobs and got.wake_in is None and heard == self._announcements:
            self._gated_idle_until = asked_at + self.poll_interval
        self._eligible["gated"] = _end(asked_at, got.wake_in)
        return got.jobs

    def wait(self, poll_interval: float) -> float:
        """How long an idle worker may sleep before it looks at limited jobs again."""
        if self.eligible_at is None:
            return poll_interval
        return max(0.0, min(poll_interval, self.eligible_at - self._clock()))

    async def run(self, closing: asyncio.Event, ttl: float, every: float) -> None:
        """Prune idle key state every ``every`` seconds until ``closing``."""
        while not closing.is_set():
            await nap(closing, every)
            if closing.is_set():
                return
            try:
                await self.store.limits.prune(ttl)
            except self.store.unavailable as exc:
                logger.warning("cannot prune idle limit keys (%s)", str(exc).strip())


def _end(asked_at: float, wake_in: float | None) -> float | None:
    return None if wake_in is None else asked_at + max(0.0, wake_in)
