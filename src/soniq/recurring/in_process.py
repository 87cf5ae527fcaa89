"""``app.scheduler.start()``: the scheduler loop as a task on the caller's event loop.

For an app that wants its schedules fired without a separate ``soniq scheduler``
process (a single-process service, a test). It is the same loop as the process's,
leader lock included, so running it in several processes (or next to ``soniq
scheduler``) still enqueues each run once.
"""

from __future__ import annotations

import asyncio
import logging

from soniq.recurring.process import SchedulerHost, SchedulerProcess

logger = logging.getLogger("soniq.scheduler")

__all__ = ["InProcessScheduler"]


class InProcessScheduler:
    """Starts and stops one :class:`SchedulerProcess` for an app, on a background task."""

    def __init__(self, app: SchedulerHost) -> None:
        self._app = app
        self._process: SchedulerProcess | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether the loop's task is alive."""
        return self._task is not None and not self._task.done()

    async def start(self, check_interval: float | None) -> None:
        """Write the app's ``@app.periodic`` schedules, then fire due runs in the
        background. Connection and schema errors raise here; a second call while
        running does nothing."""
        if self.running:
            return
        process = SchedulerProcess(
            self._app, self._app.periodic_jobs.values(), poll_interval=check_interval
        )
        await process.prepare()
        self._process = process
        self._task = asyncio.get_running_loop().create_task(
            process.serve(handle_signals=False), name="soniq-scheduler"
        )
        self._task.add_done_callback(_died)

    async def stop(self) -> None:
        """Ask the loop to finish its step, wait for it, and let the leader lock go."""
        process, task = self._process, self._task
        self._process = self._task = None
        if process is None or task is None:
            return
        process.stop()
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception:
            # Already logged when the task died (see _died); stopping must not fail,
            # or close() would leave the app's connections open.
            pass


def _died(task: asyncio.Task[None]) -> None:
    """Log a scheduler loop that ended on an error (nobody awaits it until stop())."""
    if not task.cancelled() and task.exception() is not None:
        logger.error("the in-process scheduler stopped", exc_info=task.exception())
