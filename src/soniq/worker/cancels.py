"""Finding cancel requests for a worker's jobs when no NOTIFY brought them.

``cancel_job`` notifies ``soniq_cancel``, which a listening worker hears at once (see
``wakeup.Listener``). A worker that polls (``listen_notify=False``, a pooler in
transaction mode, ``run_once``), or whose LISTEN connection was down when the request
was made, finds it here instead: once every heartbeat interval, while it holds jobs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from soniq.storage.store import Store
from soniq.worker.stopping import nap

logger = logging.getLogger("soniq.worker")


class CancelPoller:
    """Asks the database for cancel requests on this worker's running jobs."""

    def __init__(
        self,
        store: Store,
        worker_id: str,
        interval: float,
        busy: Callable[[], bool],
        deliver: Callable[[str], None],
    ) -> None:
        self.store = store
        self.worker_id = worker_id
        self.interval = interval
        self.busy = busy
        self.deliver = deliver

    async def poll(self) -> None:
        """Look once, and pass each requested job id to ``deliver``."""
        for job_id in await self.store.workers.cancel_requests(self.worker_id):
            self.deliver(job_id)

    async def run(self, closing: asyncio.Event) -> None:
        """Poll every ``interval`` while the worker holds jobs, until ``closing``."""
        while not closing.is_set():
            await nap(closing, self.interval)
            if closing.is_set() or not self.busy():
                continue
            try:
                await self.poll()
            except self.store.unavailable as exc:
                # The heartbeat reports outages; this one just tries again next time.
                logger.debug("could not look for cancel requests: %s", str(exc).strip())
            except self.store.errors as exc:
                # Anything else must not end the task: in polling mode it is the only
                # way cancel requests reach this worker.
                logger.warning("could not look for cancel requests: %s", str(exc).strip())
