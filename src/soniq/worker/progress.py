"""The worker's progress writer: what handlers report with ``ctx.progress``, coalesced.

A report only replaces the attempt's latest value in memory (from the event loop or
any handler thread). A background task of the worker session writes every pending
value in one fenced statement, at most once per SONIQ_PROGRESS_INTERVAL, and sends
``p`` events for the watched jobs among them. When a job ends, its last value is
written before its outcome (see :meth:`ProgressWriter.settle`), so a watcher's
sequence ends with the last value reported. With nothing reported, the task sleeps on
an event and no statement runs.

The value stored in ``soniq_jobs.progress`` is a JSON object::

    {"current": 3, "total": 10, "fraction": 0.3, "message": "page 3",
     "data": null, "attempt": 1}

``fraction`` is ``current / total`` (not clamped) when both are given, else null;
``attempt`` is the attempt that reported it (a retried job keeps its last attempt's
value until the new attempt reports).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import threading
from collections.abc import Collection
from typing import Any

from soniq.errors import INVALID_ARGUMENT, SoniqError
from soniq.storage.store import Store
from soniq.worker.result_json import has_nul_escape  # the NUL rule job results follow
from soniq.worker.stopping import nap

logger = logging.getLogger("soniq.worker")

#: A running attempt: (job id, attempt).
Key = tuple[str, int]


def encode_progress(attempt: int, current: Any, total: Any, message: Any, data: Any) -> str:
    """The JSON text stored for one report; ``SoniqError(INVALID_ARGUMENT)`` for bad input."""
    _check_number("current", current, "how much is done, such as current=3")
    _check_number("total", total, "how much there is in all, such as total=10", positive=True)
    if message is not None and not isinstance(message, str):
        raise SoniqError(
            INVALID_ARGUMENT,
            f"ctx.progress(message=) takes a string or None, got {type(message).__name__}. "
            "Pass the message as text.",
        )
    fraction = None
    if current is not None and total is not None:
        try:
            fraction = current / total
        except OverflowError:
            raise SoniqError(
                INVALID_ARGUMENT,
                "ctx.progress(current=, total=) are too large to divide as floats. Pass "
                "smaller numbers (a count of items, or a percentage).",
            ) from None
    value = {
        "current": current,
        "total": total,
        "fraction": fraction,
        "message": message,
        "data": data,
        "attempt": attempt,
    }
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise SoniqError(
            INVALID_ARGUMENT,
            f"ctx.progress(data=) takes a JSON value (dicts, lists, strings, finite "
            f"numbers, booleans, None), got {type(data).__name__}: {exc}. Pass plain data.",
        ) from None
    # jsonb refuses \u0000 anywhere (as in job results).
    if has_nul_escape(text):
        where = "message" if message is not None and "\x00" in message else "data"
        raise SoniqError(
            INVALID_ARGUMENT,
            f"ctx.progress({where}=) holds a NUL character, which PostgreSQL cannot store "
            "in JSON. Pass text without it (write it as '\\x00' if it must show).",
        )
    return text


def _check_number(name: str, value: Any, example: str, *, positive: bool = False) -> None:
    if value is None:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and isinstance(value, float):
        ok = math.isfinite(value)
    if ok:
        ok = value > 0 if positive else value >= 0
    if not ok:
        bound = "> 0" if positive else ">= 0"
        raise SoniqError(
            INVALID_ARGUMENT,
            f"ctx.progress({name}=) takes a finite number {bound} (an int or float, not a "
            f"bool) or None, got {value!r}. Pass {example}.",
        )


class ProgressWriter:
    """Keeps the latest value of each running attempt and writes them in batches.

    :meth:`report` is the context's :class:`~soniq.types.ProgressReport` and may be
    called from any thread; the rest runs on the worker's event loop, where the writer
    is made.
    """

    def __init__(self, store: Store, interval: float, retry_delay: float) -> None:
        self.store = store
        #: The least time between two flushes (SONIQ_PROGRESS_INTERVAL).
        self.interval = interval
        #: The pause after a flush the database refused for want of a connection.
        self.retry_delay = retry_delay
        self._pending: dict[Key, str] = {}
        self._lock = threading.Lock()  # guards _pending against handler threads
        #: The keys of the flush in flight: their jobs' ends wait for it.
        self._writing: Collection[Key] = ()
        self._flushing = asyncio.Lock()
        self._arrived = asyncio.Event()  # set when _pending stops being empty
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    def report(
        self, job_id: str, attempt: int, current: Any, total: Any, message: Any, data: Any
    ) -> None:
        """Make this the attempt's latest value (checked and encoded now, in the caller)."""
        text = encode_progress(attempt, current, total, message, data)
        with self._lock:
            first = not self._pending
            self._pending[(job_id, attempt)] = text
        if not first:
            return  # the flush task is awake already, or will take this one too
        if threading.get_ident() == self._loop_thread:
            self._arrived.set()
            return
        # RuntimeError: the worker's loop is closed (a handler thread outlived it).
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._arrived.set)

    def holds(self, job_id: str, attempt: int) -> bool:
        """Whether this attempt has a value not yet written (pending or in flight).

        Cheap when nothing reports progress: two emptiness checks, no allocation.
        """
        if not self._pending and not self._writing:
            return False
        key = (job_id, attempt)
        return key in self._pending or key in self._writing

    def take(self, job_id: str, attempt: int) -> str | None:
        """Remove and return this attempt's pending value (JSON text), if any: for a
        completion that writes it with the job's "done" (``ctx.complete``). Safe from
        any thread."""
        if not self._pending:
            return None
        with self._lock:
            return self._pending.pop((job_id, attempt), None)

    async def run(self, closing: asyncio.Event) -> None:
        """Flush as values arrive, at most once per interval, until ``closing`` (a
        background task of the worker session, cancelled at its end)."""
        while not closing.is_set():
            await self._arrived.wait()
            self._arrived.clear()
            written = await self.flush()
            await nap(closing, self.interval if written else max(self.interval, self.retry_delay))

    async def settle(self, job_id: str, attempt: int) -> None:
        """Write this attempt's last value now: its job is about to record its outcome,
        after which the row no longer takes progress. A flush in flight that holds the
        value lands first. On a database error the value is dropped (logged): the
        outcome matters more."""
        async with self._flushing:
            with self._lock:
                text = self._pending.pop((job_id, attempt), None)
            if text is None:
                return
            try:
                await self._write({(job_id, attempt): text})
            except self.store.errors as exc:
                logger.warning(
                    "could not write the last progress of job %s (%s); it is lost",
                    job_id,
                    str(exc).strip(),
                )

    async def flush(self) -> bool:
        """Write every pending value in one statement; False if the database was
        unavailable (the values are kept for the next flush, newer ones winning)."""
        async with self._flushing:
            with self._lock:
                batch, self._pending = self._pending, {}
            if not batch:
                return True
            self._writing = batch.keys()
            try:
                await self._write(batch)
            except self.store.unavailable as exc:
                self._keep(batch)
                logger.warning(
                    "could not write the progress of %d job(s) (%s); retrying in %.1fs",
                    len(batch),
                    str(exc).strip(),
                    max(self.interval, self.retry_delay),
                )
                return False
            except self.store.errors as exc:
                # Values are checked when reported, so this is a last resort; keeping
                # them would fail every later flush the same way.
                logger.error(
                    "could not write the progress of %d job(s) (%s); dropped",
                    len(batch),
                    str(exc).strip(),
                )
            except BaseException:
                self._keep(batch)  # cancelled: the closing flush takes them
                raise
            finally:
                self._writing = ()
            return True

    async def close(self, give_up_after: float) -> None:
        """The session's last flush, given at most ``give_up_after`` seconds."""
        if not self._pending:
            return
        try:
            await asyncio.wait_for(self.flush(), give_up_after)
        except asyncio.TimeoutError:
            logger.warning("gave up writing the progress of %d job(s)", len(self._pending))

    def _keep(self, batch: dict[Key, str]) -> None:
        """Put an unwritten batch back, under any value reported since."""
        with self._lock:
            for key, text in batch.items():
                self._pending.setdefault(key, text)
        self._arrived.set()

    async def _write(self, batch: dict[Key, str]) -> None:
        jobs = self.store.jobs
        rows = await jobs.write_progress([(i, a, text) for (i, a), text in batch.items()])
        events = [("p", job_id) for job_id, watched in rows if watched]
        if not events:
            return
        try:
            await jobs.send_events(events)
        except self.store.errors as exc:
            # The value is stored; a waiter's safety poll finds it.
            logger.warning("could not send progress events (%s)", str(exc).strip())
