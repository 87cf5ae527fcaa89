"""The one place an app's waits for jobs are served: :class:`WaitHub`.

However many waits are pending, an app holds ONE LISTEN connection (channel
``soniq_job_events``, named ``soniq-waits`` in ``pg_stat_activity``) and runs one
reader, which re-reads the rows of the jobs that an event named, all of them with one
``WHERE id = ANY(...)`` statement. Events are coalesced, not delayed: the first one
after a quiet spell is read at once, and those that arrive while a read is in flight
are read together next (a fixed debounce would put its length under every wait).

Nothing relies on a notification arriving:

* a new wait registers first, then its job is marked watched and read in one
  statement (``watch_jobs``), so a job finishing in between is seen either way;
* each (re)connection of the listener re-reads every pending job at once;
* a safety poll re-reads them all every SONIQ_WAIT_POLL seconds.

Without LISTEN (SQLite, memory, ``SONIQ_LISTEN_NOTIFY=false``, a pooler in transaction
mode) the reader polls, backing off from 50 ms up to SONIQ_WAIT_POLL, from 50 ms again
for each new wait. The reader and the listener start with the first wait and stop
after a minute without any (and when the app closes). Their statements run one at a
time on a connection of the hub's own (``StorageBackend.for_waits``), never on the
app's pool or a worker's.

A wait that ends (answered, timed out or cancelled) unregisters itself.
``soniq_sync.waiting.hub`` runs this hub on a thread of its own for blocking apps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from typing import Protocol

from soniq.errors import WAIT_INTERRUPTED, SoniqError
from soniq.ops.retention import result_ttl
from soniq.settings import SoniqSettings
from soniq.storage.backend import StorageBackend
from soniq.storage.store import Store
from soniq.waiting.outcome import JobState, gone

logger = logging.getLogger("soniq.waiting")

#: The channel job events go out on (see ``notify_job_events``).
CHANNEL = "soniq_job_events"
#: The listener connection's name in ``pg_stat_activity``.
APPLICATION_NAME = "soniq-waits"
#: The first poll interval without LISTEN, doubled up to SONIQ_WAIT_POLL.
FIRST_POLL = 0.05
#: Seconds without any wait after which the reader and listener stop.
IDLE_STOP = 60.0
#: Seconds between attempts while the database is unreachable (at most SONIQ_WAIT_POLL).
RETRY_DELAY = 1.0


class WaitHost(Protocol):
    """What a hub serves: an app's store and settings."""

    @property
    def store(self) -> Store:
        """The store the hub's statements run on."""

    @property
    def settings(self) -> SoniqSettings:
        """The settings in force (SONIQ_WAIT_POLL, SONIQ_LISTEN_NOTIFY, SONIQ_RESULT_TTL)."""


class _Wait:
    """One pending wait: for all of its jobs to end, or for the first."""

    __slots__ = ("first", "future", "ids", "looked", "states", "unseen")

    def __init__(self, ids: Sequence[str], first: bool, future: asyncio.Future[None]) -> None:
        self.ids = ids
        self.first = first
        self.future = future
        self.states: dict[str, JobState] = {}
        #: The jobs not read yet, and whether each has been read once (or it ended).
        self.unseen = set(ids)
        self.looked = asyncio.Event()

    def seen(self, job_id: str, state: JobState | None) -> None:
        self.unseen.discard(job_id)
        if not self.unseen:
            self.looked.set()
        if self.future.done():
            return
        if state is None:
            self.future.set_exception(gone(job_id))
        elif state.final:
            self.states[job_id] = state
            if self.first or len(self.states) == len(self.ids):
                self.future.set_result(None)

    def fail(self, exc: BaseException) -> None:
        self.looked.set()
        if not self.future.done():
            self.future.set_exception(exc)


class _Stream:
    """One ``handle.events()`` reader: every state read of its job, in order."""

    __slots__ = ("ids", "queue")

    def __init__(self, job_id: str) -> None:
        self.ids = (job_id,)
        self.queue: asyncio.Queue[JobState | BaseException | None] = asyncio.Queue()

    def seen(self, job_id: str, state: JobState | None) -> None:
        self.queue.put_nowait(state)

    def fail(self, exc: BaseException) -> None:
        self.queue.put_nowait(exc)


_Sub = _Wait | _Stream


class Subscription:
    """What :meth:`WaitHub.stream` gives: the readings of one job's row, in order."""

    def __init__(self, hub: WaitHub, stream: _Stream) -> None:
        self._hub = hub
        self._stream = stream

    async def next(self) -> JobState | None:
        """The next reading (None: the job is gone); raises what failed the hub's read
        (SONIQ_WAIT_INTERRUPTED when the app closed)."""
        item = await self._stream.queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        """Unregister (idempotent)."""
        self._hub._remove(self._stream)


class WaitHub:
    """Serves every wait of one app (see the module docstring)."""

    def __init__(self, host: WaitHost, *, own_reads: bool = True) -> None:
        self._host = host
        #: Whether reads go through a backend of the hub's own (``for_waits``), made
        #: and opened on the first read; False: through the host's store.
        self._own_reads = own_reads
        self._reads: Store | None = None
        #: The host's backend that ``_reads`` was made for.
        self._reads_of: StorageBackend | None = None
        #: Job id -> the waits and streams interested in it.
        self._subs: dict[str, set[_Sub]] = {}
        #: Ids to mark watched and read (new subscriptions), and ids to read again.
        self._new: set[str] = set()
        self._dirty: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        #: Whether the listener is LISTENing now (else the reader polls with backoff).
        self.listening = False
        self._poll = FIRST_POLL

    # -- what waits call ---------------------------------------------------------------

    async def wait(
        self, job_ids: Sequence[str], timeout: float | None, first: bool
    ) -> dict[str, JobState]:
        """The final states of ``job_ids`` (all, or at least one if ``first``).

        TimeoutError after ``timeout`` seconds (the jobs go on); JobGone for an id
        that names no job (or one whose result expired: see ``outcome_of``).
        """
        loop = asyncio.get_running_loop()
        pending = _Wait(job_ids, first, loop.create_future())
        self._add(pending)
        try:
            if timeout is None:
                await pending.future
            else:
                # However short the timeout, each job is read once first: wait(timeout=0)
                # tells whether it has ended. The read itself gets the connect timeout.
                deadline = loop.time() + timeout
                grace = max(timeout, self._host.settings.connect_timeout)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(pending.looked.wait(), grace)
                await asyncio.wait_for(pending.future, max(0.0, deadline - loop.time()))
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"Job(s) {', '.join(job_ids[:3])}{'...' if len(job_ids) > 3 else ''} did "
                f"not finish within {timeout:g}s; they go on running. Wait again, or "
                "cancel them with app.cancel_job()."
            ) from None
        finally:
            self._remove(pending)
        return pending.states

    def stream(self, job_id: str) -> Subscription:
        """A subscription to each new reading of the job's row; close it when done."""
        stream = _Stream(job_id)
        self._add(stream)
        return Subscription(self, stream)

    @property
    def pending(self) -> int:
        """How many jobs have a wait or stream registered (0 when nothing waits)."""
        return len(self._subs)

    async def close(self) -> None:
        """Stop the reader and listener; waits still pending fail (SONIQ_WAIT_INTERRUPTED)."""
        tasks = [t for t in (self._reader, self._listener) if t is not None]
        self._reader = self._listener = None
        self.listening = False
        for task in tasks:
            task.cancel()
        if tasks and self._loop is asyncio.get_running_loop():
            await asyncio.gather(*tasks, return_exceptions=True)
        await self._close_reads()
        closed = SoniqError(
            WAIT_INTERRUPTED,
            "The app was closed while this wait was pending; the job goes on. Wait again "
            "once the app is in use again.",
        )
        for subs in list(self._subs.values()):
            for sub in subs:
                sub.fail(closed)

    # -- the registry ------------------------------------------------------------------

    def _add(self, sub: _Sub) -> None:
        self._bind_loop()
        for job_id in sub.ids:
            self._subs.setdefault(job_id, set()).add(sub)
            self._new.add(job_id)
        self._poll = FIRST_POLL
        self._start()
        self._wake.set()

    def _remove(self, sub: _Sub) -> None:
        for job_id in sub.ids:
            subs = self._subs.get(job_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[job_id]

    def _bind_loop(self) -> None:
        """The hub's tasks belong to one event loop; a wait on another (a new
        ``asyncio.run``) starts the hub afresh there."""
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        self._loop = loop
        self._wake = asyncio.Event()
        self._reader = self._listener = None
        self.listening = False

    def _start(self) -> None:
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read_loop(), name="soniq-waits-reader")
        if self._listens() and (self._listener is None or self._listener.done()):
            self._listener = asyncio.create_task(self._listen_loop(), name="soniq-waits-listener")

    def _listens(self) -> bool:
        return self._host.settings.listen_notify and self._host.store.backend.notifies

    # -- the reader --------------------------------------------------------------------

    async def _read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        idle_since = loop.time()
        next_poll = loop.time() + self._interval()
        while True:
            # Jobs a mark skipped (their row was locked) are tried again soon.
            until = min(next_poll, loop.time() + FIRST_POLL) if self._new else next_poll
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, until - loop.time()))
            self._wake.clear()
            if loop.time() >= next_poll:
                self._dirty.update(self._subs)  # the safety poll: everything, again
                if not self.listening:
                    self._poll = min(self._poll * 2, self._host.settings.wait_poll)
                next_poll = loop.time() + self._interval()
            if not self._subs:
                self._new.clear()
                self._dirty.clear()
                if loop.time() - idle_since >= IDLE_STOP:
                    await self._stop_idle()
                    return
                continue
            idle_since = loop.time()
            if self._poll == FIRST_POLL and not self.listening:
                next_poll = min(next_poll, loop.time() + FIRST_POLL)  # a new wait: look soon
            new = {i for i in self._new if i in self._subs}
            dirty = {i for i in self._dirty if i in self._subs} - new
            self._new.clear()
            self._dirty.clear()
            if new or dirty:
                await self._read(new, dirty)

    def _interval(self) -> float:
        """Seconds to the next look at every pending job: the safety poll while
        listening, else the polling backoff."""
        wait_poll = self._host.settings.wait_poll
        return wait_poll if self.listening else min(self._poll, wait_poll)

    async def _stop_idle(self) -> None:
        """Nothing to wait for since a while: free the hub's connections."""
        listener, self._listener, self._reader = self._listener, None, None
        self.listening = False
        if listener is not None:
            listener.cancel()
        await self._close_reads()

    async def _reads_store(self) -> Store:
        """Where the reads run: the host's store once it is ready, or over a backend
        of the hub's own made from it."""
        host = self._host.store
        if self._reads is not None and self._reads_of is not host.backend:
            await self._close_reads()  # the app is on another backend now (using_backend)
        if self._reads is None:
            await host.ready()  # the app connects and checks its schema first
            backend = host.backend.for_waits() if self._own_reads else host.backend
            if backend is not host.backend:
                await backend.open()
            self._reads = Store(backend) if backend is not host.backend else host
            self._reads_of = host.backend
        return self._reads

    async def _close_reads(self) -> None:
        reads, self._reads = self._reads, None
        if reads is not None and reads is not self._host.store:
            await reads.close()

    async def _read(self, new: set[str], dirty: set[str]) -> None:
        """Read the rows of ``new`` (marking them watched) and ``dirty``; tell their subs."""
        ttl = result_ttl(self._host.settings)
        store = self._host.store
        try:
            store = await self._reads_store()
            jobs = store.jobs
            rows = await jobs.watch(sorted(new), ttl) if new else {}
            if dirty:
                rows.update(await jobs.states(sorted(dirty), ttl))
        except store.unavailable as exc:
            logger.warning("could not read awaited jobs (%s); trying again", str(exc).strip())
            self._new |= new
            self._dirty |= dirty
            await asyncio.sleep(min(RETRY_DELAY, self._host.settings.wait_poll))
            self._wake.set()
            return
        except Exception as exc:  # schema missing, a bad setting...: the waits fail with it
            for job_id in new | dirty:
                for sub in list(self._subs.get(job_id, ())):
                    sub.fail(exc)
            return
        for job_id in new | dirty:
            row = rows.get(job_id)
            state = None
            if row is not None:
                state = JobState.from_row(row)
                if job_id in new and not row["watched"] and not state.final:
                    self._new.add(job_id)  # its row was locked: mark it on the next try
            for sub in list(self._subs.get(job_id, ())):
                sub.seen(job_id, state)

    # -- the listener ------------------------------------------------------------------

    async def _listen_loop(self) -> None:
        store = self._host.store
        while True:
            try:
                async with store.listen([CHANNEL], APPLICATION_NAME) as notes:
                    self.listening = True
                    # Whatever happened while not listening: look at everything now.
                    self._dirty.update(self._subs)
                    self._wake.set()
                    async for note in notes:
                        self._heard(note.payload)
            except store.unavailable as exc:
                if self.listening:
                    logger.warning(
                        "LISTEN %s lost (%s); waits poll every %gs until it is back",
                        CHANNEL,
                        str(exc).strip(),
                        self._host.settings.wait_poll,
                    )
                self.listening = False
                self._poll = FIRST_POLL
                self._wake.set()  # poll with backoff meanwhile
                await asyncio.sleep(min(RETRY_DELAY, self._host.settings.wait_poll))
            except Exception:
                self.listening = False
                logger.exception("the waits' listener failed; waits poll from now on")
                return

    def _heard(self, payload: str) -> None:
        """One job-events payload (``kind:id,kind:id...``): mark the awaited ids."""
        woke = False
        for job_id in _ids(payload.split(",")):
            if job_id in self._subs:
                self._dirty.add(job_id)
                woke = True
        if woke:
            self._wake.set()


def _ids(items: Iterable[str]) -> Iterable[str]:
    for item in items:
        _, _, job_id = item.partition(":")
        if job_id:
            yield job_id
