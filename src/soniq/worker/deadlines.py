"""Job timeouts enforced by one watchdog instead of one timer per job."""

from __future__ import annotations

import asyncio
import itertools

from soniq.worker.stopping import nap

#: How often the watchdog looks for overdue jobs; a timeout may fire up to this late.
RESOLUTION = 0.05


class Deadlines:
    """Cancels a job's task once its handler runs past its deadline, or on request.

    Only running handlers are armed (at most the worker's concurrency), so each
    check is a short scan. ``disarm`` follows the handler's return with no
    ``await`` between them, so a job that finished is never cancelled.
    """

    def __init__(self) -> None:
        self._armed: dict[asyncio.Task[object], tuple[float, int]] = {}
        self._fired: dict[asyncio.Task[object], int] = {}
        self._tokens = itertools.count()

    def arm(self, task: asyncio.Task[object], seconds: float) -> int:
        """Watch ``task``; return the token to disarm it with."""
        token = next(self._tokens)
        self._armed[task] = (asyncio.get_running_loop().time() + seconds, token)
        return token

    def disarm(self, task: asyncio.Task[object], token: int) -> bool:
        """Stop watching; True if the deadline had already cancelled the task."""
        if self._armed.get(task, (0.0, -1))[1] == token:
            del self._armed[task]
        return self._fired.pop(task, None) == token

    def interrupt(self, task: asyncio.Task[object]) -> bool:
        """Cancel ``task`` now if its handler is running (armed); True if it was.

        Unlike an expired deadline, ``disarm`` then reports False, so the handler's
        ``CancelledError`` propagates as it is (a cancel request, not a timeout).
        """
        if self._armed.pop(task, None) is None:
            return False
        task.cancel()
        return True

    def expire(self) -> None:
        """Cancel every armed task whose deadline has passed."""
        now = asyncio.get_running_loop().time()
        for task, (deadline, token) in list(self._armed.items()):
            if deadline <= now:
                del self._armed[task]
                self._fired[task] = token
                task.cancel()

    async def run(self, closing: asyncio.Event) -> None:
        """Expire deadlines every :data:`RESOLUTION` seconds until ``closing``."""
        while not closing.is_set():
            self.expire()
            await nap(closing, RESOLUTION)
