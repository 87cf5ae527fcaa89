"""The worker's copy of the fleet's queue pauses (and of which queues have limits of
their own), and how it keeps it current.

The claim statement reads ``soniq_queues`` itself, so no claim that starts after a
pause commits takes a job of the paused queue: this copy is not what enforces a
pause. It is what lets the worker give back the jobs it had already claimed and not
started (the claim-ahead queue holds up to two batches), and tell
``pause(wait=True)`` that it has: once a worker writes a control version to
``soniq_workers.control_seen``, it holds no unstarted job of a queue paused by then.

A reload is asked for by a ``soniq_control`` notification, and by each heartbeat that
returns a newer control version than the one applied (workers that do not listen
notice within one heartbeat interval).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from soniq.storage.store import Store
from soniq.worker.stopping import nap

logger = logging.getLogger("soniq.worker")

#: The queue name that pauses every queue (as in soniq.ops.queues).
ALL_QUEUES = "*"


class PausedQueues:
    """Which queues are paused now, as this worker last read them.

    ``apply`` is the worker's part of a reload: it runs right after the new pauses are
    in place, with no await in between, and returns once nothing of a paused queue can
    start here (see ``Worker._paused_changed``); then the version is confirmed.
    """

    def __init__(
        self,
        db: Store,
        worker_id: str,
        clock: Callable[[], float],
        apply: Callable[[], Awaitable[None]],
        retry_delay: float,
    ) -> None:
        self._db = db
        self._worker_id = worker_id
        self._clock = clock
        self._apply = apply
        self._retry_delay = retry_delay
        #: The control version applied and confirmed (0: none yet).
        self.version = 0
        #: Whether the optional index by queue is there (read with the pauses), so
        #: that a worker serving only some queues can claim by queue.
        self.queue_index = False
        #: The queues with limits of their own (gated: only the gated claim takes
        #: their jobs), as last read.
        self.gated: frozenset[str] = frozenset()
        # Paused queue -> the loop time its pause ends (None: until resumed).
        self._until: dict[str, float | None] = {}
        self._wanted = asyncio.Event()

    def holds(self, queue: str) -> bool:
        """Whether jobs of ``queue`` must not start here now."""
        if not self._until:
            return False
        now = self._clock()
        for name in (ALL_QUEUES, queue):
            if name in self._until:
                end = self._until[name]
                if end is None or end > now:
                    return True
        return False

    @property
    def any(self) -> bool:
        """Whether any pause is in force (cheap: checked once per claim)."""
        return bool(self._until) and any(
            end is None or end > self._clock() for end in self._until.values()
        )

    def gated_among(self, queues: list[str] | None) -> list[str]:
        """The gated queues among ``queues`` (None: every queue), by name."""
        if not self.gated:
            return []
        return sorted(self.gated if queues is None else self.gated.intersection(queues))

    def heard(self, version: int | None = None) -> None:
        """A notification (``version`` None) or a heartbeat's control version: reload
        unless the version is already applied."""
        if version is None or version != self.version:
            self._wanted.set()

    async def reload(self) -> None:
        """Read the pauses, apply them, and confirm the version (one reload)."""
        state = await self._db.queues.control()
        now = self._clock()
        self._until = {
            name: None if left is None else now + left
            for name, left in zip(state["names"], state["remaining"], strict=True)
        }
        self.queue_index = bool(state["queue_index"])
        self.gated = frozenset(state["gated"])
        await self._apply()
        version = int(state["version"])
        await self._db.queues.seen(self._worker_id, version)
        if version != self.version and self._until:
            logger.info("paused queues: %s", ", ".join(sorted(self._until)))
        self.version = version

    async def run(self, closing: asyncio.Event) -> None:
        """Reload whenever asked, until ``closing`` (a background task)."""
        while not closing.is_set():
            await self._wanted.wait()
            self._wanted.clear()
            try:
                await self.reload()
            except self._db.unavailable as exc:
                logger.warning("cannot read paused queues (%s); retrying", str(exc).strip())
                self._wanted.set()
                await nap(closing, self._retry_delay)
