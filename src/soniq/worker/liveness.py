"""A worker's presence in ``soniq_workers``, recovery of workers that went silent, and
the retention sweep that runs beside them."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from soniq.ops.pruning import Pruner
from soniq.settings import SoniqSettings
from soniq.storage.store import Store
from soniq.worker.stopping import nap

logger = logging.getLogger("soniq.worker")


class Liveness:
    """Registers the worker, heartbeats, periodically recovers stale workers, and
    sweeps old finished jobs (see :mod:`soniq.ops.pruning`).

    ``on_control`` is given each heartbeat's control version (see
    :mod:`soniq.worker.pauses`), or None after the worker registered again.
    """

    def __init__(
        self,
        store: Store,
        settings: SoniqSettings,
        worker_id: str,
        queues: list[str] | None,
        concurrency: int,
        on_control: Callable[[int | None], None] | None = None,
    ) -> None:
        self.store = store
        self.on_control = on_control
        self.settings = settings
        self.worker_id = worker_id
        self.identity: dict[str, Any] = {
            "id": worker_id,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "queues": queues,
            "concurrency": concurrency,
        }
        self.pruner = Pruner(store, settings)

    async def register(self) -> None:
        """Insert (or refresh) this worker's row."""
        await self.store.workers.register(self.identity)

    async def deregister(self) -> None:
        """Remove this worker's row."""
        await self.store.workers.deregister(self.worker_id)

    async def beat(self) -> None:
        """Refresh the heartbeat; re-register if another worker declared us dead."""
        version = await self.store.workers.heartbeat(self.worker_id)
        if version is None:
            logger.warning(
                "worker %s was presumed dead and its jobs were requeued; registering again",
                self.worker_id,
            )
            await self.register()
        if self.on_control is not None:
            # A new row has no control version: confirm the pauses again.
            self.on_control(version)

    async def recover(self) -> tuple[int, int, int]:
        """Requeue (or dead-letter) the jobs of silent workers; return the counts."""
        workers, requeued, buried = await self.store.workers.recover_stale(
            self.settings.heartbeat_timeout
        )
        if workers or requeued or buried:
            logger.warning(
                "recovered %d stale worker(s): %d job(s) requeued, %d dead-lettered",
                workers,
                requeued,
                buried,
            )
        return workers, requeued, buried

    async def run(self, closing: asyncio.Event) -> None:
        """Heartbeat every interval and recover every cleanup interval, until ``closing``.

        The sweep runs as a task of its own, so that a long sweep never delays a
        heartbeat.
        """
        sweeping = asyncio.create_task(self.pruner.run(closing), name="soniq-prune")
        try:
            await self._beat_and_recover(closing)
        finally:
            sweeping.cancel()
            await asyncio.gather(sweeping, return_exceptions=True)

    async def _beat_and_recover(self, closing: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_cleanup = loop.time()
        while not closing.is_set():
            try:
                await self.beat()
                if loop.time() >= next_cleanup:
                    next_cleanup = loop.time() + self.settings.cleanup_interval
                    await self.recover()
            except self.store.unavailable as exc:
                logger.warning("heartbeat failed (%s); retrying", str(exc).strip())
            await nap(closing, self.settings.heartbeat_interval)
