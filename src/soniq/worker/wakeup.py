"""Waking the worker when a job is committed or cancelled: LISTEN/NOTIFY, else polling."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from soniq.storage.store import Store
from soniq.worker.stopping import nap

logger = logging.getLogger("soniq.worker")

CHANNEL = "soniq_new_job"
#: ``cancel_job`` notifies this channel with the job id when it asks a running job to stop.
CANCEL_CHANNEL = "soniq_cancel"
#: A job written for later notifies this channel with the seconds until it falls due.
DELAYED_CHANNEL = "soniq_delayed"
#: A queue pause or resume notifies this channel (soniq.worker.pauses).
CONTROL_CHANNEL = "soniq_control"


class Listener:
    """Holds a dedicated LISTEN connection and calls ``wake`` for relevant queues.

    With ``on_cancel``, it also listens for cancel requests and passes on their job ids
    (every worker hears every request; each acts on the jobs it holds). With
    ``on_delayed``, it passes on in how many seconds a newly written delayed job falls
    due, and calls ``on_ready`` once listening (again after each reconnection): a job
    written before then was not announced. With ``on_control``, it passes on that a
    queue was paused or resumed (and calls it on each connection too, for what was
    missed while not listening).

    When LISTEN cannot be set up (for example behind PgBouncer in transaction mode)
    the worker still finds work by polling; ``mode`` says which it is doing.
    """

    def __init__(
        self,
        store: Store,
        queues: list[str] | None,
        wake: Callable[[], None],
        retry_delay: float,
        poll_interval: float,
        on_cancel: Callable[[str], None] | None = None,
        on_delayed: Callable[[float], None] | None = None,
        on_ready: Callable[[], None] | None = None,
        on_control: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.queues = frozenset(queues) if queues else None
        self.wake = wake
        self.retry_delay = retry_delay
        self.poll_interval = poll_interval
        self.on_cancel = on_cancel
        self.on_delayed = on_delayed
        self.on_ready = on_ready
        self.on_control = on_control
        self.mode = "polling"
        self.ready = asyncio.Event()

    async def run(self, closing: asyncio.Event) -> None:
        """Listen until ``closing``, reconnecting after errors (a background task)."""
        while not closing.is_set():
            try:
                channels = [CHANNEL]
                if self.on_cancel is not None:
                    channels.append(CANCEL_CHANNEL)
                if self.on_delayed is not None:
                    channels.append(DELAYED_CHANNEL)
                if self.on_control is not None:
                    channels.append(CONTROL_CHANNEL)
                async with self.store.listen(channels) as notes:
                    if self.mode != "listen":
                        logger.info(
                            "worker wakes on LISTEN %s (and polls every %gs)",
                            CHANNEL,
                            self.poll_interval,
                        )
                    self.mode = "listen"
                    self.ready.set()
                    self.wake()  # look for anything committed while we were not listening
                    if self.on_ready is not None:
                        self.on_ready()
                    if self.on_control is not None:
                        self.on_control()
                    async for note in notes:
                        if note.channel == CANCEL_CHANNEL:
                            if self.on_cancel is not None:
                                self.on_cancel(note.payload)
                        elif note.channel == DELAYED_CHANNEL:
                            if self.on_delayed is not None:
                                self.on_delayed(_seconds(note.payload))
                        elif note.channel == CONTROL_CHANNEL:
                            if self.on_control is not None:
                                self.on_control()
                        elif (
                            self.queues is None
                            or note.payload in self.queues
                            or note.payload == "*"  # every queue: limits changed
                        ):
                            self.wake()
            except self.store.unavailable as exc:
                if self.mode != "polling" or not self.ready.is_set():
                    logger.warning(
                        "LISTEN %s unavailable (%s); polling every %gs until it is back",
                        CHANNEL,
                        str(exc).strip(),
                        self.poll_interval,
                    )
                self.mode = "polling"
                self.ready.set()
                await nap(closing, self.retry_delay)


def _seconds(payload: str) -> float:
    """A soniq_delayed payload as seconds (0 if it is not a number: look now)."""
    try:
        return float(payload)
    except ValueError:
        return 0.0
