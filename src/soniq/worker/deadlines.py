"""Job timeouts enforced by one watchdog instead of one timer per job."""

from __future__ import annotations

import asyncio
import enum
import itertools

from soniq.worker.stopping import nap

#: How often the watchdog looks for overdue jobs; a timeout may fire up to this late.
RESOLUTION = 0.05


class Stop(enum.Enum):
    """Why the watchdog cancelled a handler's task."""

    #: Its deadline passed.
    TIMED_OUT = "timed out"
    #: The worker asked: a shutdown, or ``cancel_job`` (see :meth:`Deadlines.interrupt`).
    INTERRUPTED = "interrupted"


class Deadlines:
    """Cancels a job's task once its handler runs past its deadline, or on request.

    Only running handlers are armed (at most the worker's concurrency), so each
    check is a short scan. ``disarm`` follows the handler's return with no
    ``await`` between them, so a job that finished is never cancelled. Every
    cancellation of a running handler goes through here, so ``disarm`` can tell the
    worker's own cancellation from a ``CancelledError`` the handler raised itself.
    """

    def __init__(self) -> None:
        self._armed: dict[asyncio.Task[object], tuple[float, int]] = {}
        self._fired: dict[asyncio.Task[object], tuple[int, Stop]] = {}
        self._tokens = itertools.count()

    def arm(self, task: asyncio.Task[object], seconds: float) -> int:
        """Watch ``task``; return the token to disarm it with."""
        token = next(self._tokens)
        self._armed[task] = (asyncio.get_running_loop().time() + seconds, token)
        return token

    def disarm(self, task: asyncio.Task[object], token: int) -> Stop | None:
        """Stop watching; say why the watchdog cancelled the task since ``arm``
        (None: it did not)."""
        if self._armed.get(task, (0.0, -1))[1] == token:
            del self._armed[task]
        fired = self._fired.pop(task, None)
        return fired[1] if fired is not None and fired[0] == token else None

    def interrupt(self, task: asyncio.Task[object]) -> bool:
        """Cancel ``task`` now if its handler is running (armed); True if it was.

        ``disarm`` then reports :attr:`Stop.INTERRUPTED`, so the runner lets the
        ``CancelledError`` propagate as the worker's own (a shutdown or a cancel
        request, not a timeout).
        """
        armed = self._armed.pop(task, None)
        if armed is None:
            return False
        self._fired[task] = (armed[1], Stop.INTERRUPTED)
        task.cancel()
        return True

    def expire(self) -> None:
        """Cancel every armed task whose deadline has passed."""
        now = asyncio.get_running_loop().time()
        for task, (deadline, token) in list(self._armed.items()):
            if deadline <= now:
                del self._armed[task]
                self._fired[task] = (token, Stop.TIMED_OUT)
                task.cancel()

    async def run(self, closing: asyncio.Event) -> None:
        """Expire deadlines every :data:`RESOLUTION` seconds until ``closing``."""
        while not closing.is_set():
            self.expire()
            await nap(closing, RESOLUTION)
