"""Finishing a job inside the handler's own transaction (``ctx.complete``).

The handler's business writes and the job's ``done`` then commit together, or not at
all: a crash can no longer leave the work done and the job undone, or the reverse.
One :class:`Completion` belongs to one attempt. ``complete`` runs one fenced UPDATE
on the caller's connection (``complete_job_in_tx``); the worker then asks the row
what the caller's transaction did (``Jobs.attempt_state``), because the database's
state is what counts: a handler that raised after its transaction committed is done,
and one whose completing transaction rolled back is retried, never acknowledged.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from soniq.adapters import async_adapter
from soniq.adapters.sqlstate import sqlstate
from soniq.adapters.transaction_state import in_transaction
from soniq.errors import (
    COMPLETE_NEEDS_TRANSACTION,
    COMPLETE_OUTSIDE_HANDLER,
    COMPLETE_TWICE,
    INVALID_ARGUMENT,
    JOB_LEASE_LOST,
    NOT_SAME_DATABASE,
    SoniqError,
)
from soniq.storage import completion as storage
from soniq.storage.records import ClaimedJob
from soniq.types import Snooze
from soniq.worker.result_json import result_json, returned_json
from soniq.worker.stopping import nap

if TYPE_CHECKING:
    from soniq.core.registry import JobSpec
    from soniq.storage.handler_pools import HandlerPools
    from soniq.storage.store import Store
    from soniq.worker.progress import ProgressWriter

logger = logging.getLogger("soniq.worker")

#: SQLSTATE of a lock wait past lock_timeout.
_LOCK_NOT_AVAILABLE = "55P03"


class Completion:
    """One attempt's completion in a transaction of the handler's choosing.

    The worker makes one per attempt that has a context (``instance`` is this
    database's ``soniq_instance`` id) and closes it when the handler returns.
    """

    __slots__ = (
        "attempt",
        "committed",
        "connection",
        "instance",
        "job_id",
        "open",
        "result",
        "take_progress",
        "xid",
    )

    def __init__(
        self,
        job_id: str,
        attempt: int,
        instance: str,
        take_progress: Callable[[], str | None] | None = None,
    ) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.instance = instance
        #: Hands over the attempt's unwritten progress, to commit with the "done"
        #: (afterwards the row takes no more progress).
        self.take_progress = take_progress
        #: Whether the handler still runs (a context kept past its handler refuses).
        self.open = True
        #: The transaction that completed the attempt, once ``complete`` ran.
        self.xid: str | None = None
        #: The JSON text written as the job's result.
        self.result: str | None = None
        #: The connection of a ``transactional=True`` job (``ctx.connection``).
        self.connection: Any = None
        #: Soniq committed the completing transaction itself (a transactional job),
        #: so the row need not be asked.
        self.committed = False

    @property
    def began(self) -> bool:
        """Whether the completing UPDATE ran (its transaction may not have committed)."""
        return self.xid is not None

    async def complete(self, conn: object, result: Any = None) -> None:
        """Mark the attempt done in ``conn``'s open transaction (``ctx.complete``)."""
        await self.complete_text(conn, self._check(conn, result))

    def complete_sync(self, conn: object, result: Any = None) -> None:
        """``complete`` for blocking connections, from a sync handler's thread."""
        self.complete_text_sync(conn, self._check(conn, result))

    async def complete_text(self, conn: object, text: str | None) -> None:
        """:meth:`complete` with the result already as JSON text (or None)."""
        self._record(
            await storage.complete_attempt(async_adapter(conn), *self._attempt(text)), text
        )

    def complete_text_sync(self, conn: object, text: str | None) -> None:
        """:meth:`complete_text` on a blocking connection."""
        from soniq_sync.adapters import sync_adapter
        from soniq_sync.storage import completion as sync_storage

        self._record(sync_storage.complete_attempt(sync_adapter(conn), *self._attempt(text)), text)

    def _attempt(
        self, text: str | None
    ) -> tuple[str, int, str, str | None, str | None, str | None]:
        """The arguments of ``complete_attempt``; the unwritten progress is handed over
        only by the call that writes the "done"."""
        progress = (
            None if self.xid is not None or self.take_progress is None else self.take_progress()
        )
        return self.job_id, self.attempt, self.instance, text, progress, self.xid

    def _check(self, conn: object, result: Any) -> str | None:
        if not self.open:
            raise SoniqError(
                COMPLETE_OUTSIDE_HANDLER,
                f"ctx.complete() was called after job {self.job_id}'s handler returned. "
                "Call it from inside the running handler, in the transaction that does "
                "the job's work.",
                job_id=self.job_id,
            )
        text = None if result is None else result_json(result)
        if result is not None and text is None:
            raise SoniqError(
                INVALID_ARGUMENT,
                f"ctx.complete(result=) got a {type(result).__name__}, which cannot be "
                "stored as JSON. Pass JSON-compatible data (dicts, lists, strings, "
                "numbers, booleans, None).",
            )
        if not in_transaction(conn):
            raise SoniqError(
                COMPLETE_NEEDS_TRANSACTION,
                "ctx.complete() got a connection in autocommit with no transaction "
                "open, so the job's completion would commit on its own, apart from the "
                "handler's writes. Open a transaction first (`async with "
                "conn.transaction():`, `with transaction.atomic():` ...) and complete "
                "inside it.",
                job_id=self.job_id,
            )
        return text

    def _record(self, completed: tuple[storage.Completed, str | None], text: str | None) -> None:
        outcome, xid = completed
        if outcome == "twice":
            raise self._twice()
        if outcome == "elsewhere":
            raise self._elsewhere()
        if outcome == "lost":
            raise SoniqError(
                JOB_LEASE_LOST,
                f"Job {self.job_id}: attempt {self.attempt} no longer holds the job (it "
                "was recovered from a worker presumed dead, taken over, cancelled or "
                "deleted), so nothing was written. Let this error roll the transaction "
                "back: the attempt that holds the job does the work.",
                job_id=self.job_id,
                attempt=self.attempt,
            )
        if outcome == "done":
            self.xid = xid
            self.result = text

    def _twice(self) -> SoniqError:
        return SoniqError(
            COMPLETE_TWICE,
            f"Job {self.job_id} was already completed by this attempt on another "
            "transaction. Complete once, in the transaction that does the job's work.",
            job_id=self.job_id,
        )

    def _elsewhere(self) -> SoniqError:
        return SoniqError(
            NOT_SAME_DATABASE,
            f"ctx.complete() got a connection to another database than job "
            f"{self.job_id}'s, so the job's completion cannot commit with its writes. "
            "Complete on a connection to Soniq's own database.",
            job_id=self.job_id,
        )


class Completions:
    """The worker's side: a :class:`Completion` per attempt, the transaction around a
    transactional job, and what the row says once the handler is over.

    ``instance`` is this database's ``soniq_instance`` id; ``pools`` lends the
    connections of transactional jobs; ``wait`` bounds each wait for a completing
    transaction still in flight (it is waited for again, with a warning).
    """

    def __init__(
        self,
        db: Store,
        instance: str,
        pools: HandlerPools,
        progress: ProgressWriter | None = None,
        *,
        wait: float,
        retry_delay: float,
        closing: asyncio.Event,
    ) -> None:
        self.db = db
        self.instance = instance
        self.pools = pools
        self.progress = progress
        self.wait = wait
        self.retry_delay = retry_delay
        self.closing = closing

    def new(self, job: ClaimedJob) -> Completion:
        """The completion of ``job``'s current attempt."""
        take = (
            None
            if self.progress is None
            else functools.partial(self.progress.take, job.id, job.attempt)
        )
        return Completion(job.id, job.attempt, self.instance, take)

    async def settled(self, job: ClaimedJob) -> str:
        """``done``, ``processing`` or ``lost``: what the transaction that completed
        ``job`` did (see ``Jobs.attempt_state``), through outages and open ones."""
        while True:
            try:
                return await self.db.jobs.attempt_state(job, self.wait)
            except self.db.unavailable as exc:
                if self.closing.is_set():
                    raise
                logger.warning(
                    "could not read job %s after its transaction (%s); retrying in %.1fs",
                    job.id,
                    str(exc).strip(),
                    self.retry_delay,
                    extra=job.log_extra(),
                )
                await nap(self.closing, self.retry_delay)
            except self.db.errors as exc:
                if sqlstate(exc) != _LOCK_NOT_AVAILABLE:
                    raise
                logger.warning(
                    "job %s: the transaction that completed it is still open after %gs; "
                    "waiting for it to commit or roll back",
                    job.id,
                    self.wait,
                    extra=job.log_extra(),
                )

    def around(self, spec: JobSpec, completion: Completion) -> Callable[..., Any]:
        """``spec``'s handler inside a transaction that commits the job's "done" (and
        its result) with the handler's writes; an exception rolls both back."""
        if spec.transactional == "django":
            return functools.partial(_in_django_atomic, spec, completion)
        if not spec.is_async:
            return functools.partial(_in_transaction_sync, self.pools, spec, completion)
        return functools.partial(_in_transaction, self.pools, spec, completion)


async def _in_transaction(
    pools: HandlerPools, spec: JobSpec, completion: Completion, /, **kwargs: Any
) -> Any:
    async with pools.connection() as conn:
        async with conn.transaction():
            completion.connection = conn
            try:
                result = await spec.func(**kwargs)
                await completion.complete_text(conn, _returned(spec, result))
            finally:
                completion.connection = None
        completion.committed = True
    return result


def _in_transaction_sync(
    pools: HandlerPools, spec: JobSpec, completion: Completion, /, **kwargs: Any
) -> Any:
    with pools.sync_connection() as conn:
        with conn.transaction():
            completion.connection = conn
            try:
                result = spec.func(**kwargs)
                completion.complete_text_sync(conn, _returned(spec, result))
            finally:
                completion.connection = None
        completion.committed = True
    return result


def _in_django_atomic(spec: JobSpec, completion: Completion, /, **kwargs: Any) -> Any:
    from django.db import close_old_connections, connections, transaction

    alias = spec.using or "default"
    close_old_connections()  # a worker thread's connection may have gone stale
    with transaction.atomic(using=alias):
        conn = connections[alias]
        completion.connection = conn
        try:
            result = spec.func(**kwargs)
            completion.complete_text_sync(conn, _returned(spec, result))
        finally:
            completion.connection = None
    # Not marked committed: an outer atomic block (a test's, a middleware's) may still
    # roll this one back, so the worker asks the row.
    return result


def _returned(spec: JobSpec, result: Any) -> str | None:
    """The JSON text to commit as a transactional handler's result. A returned Snooze
    raises instead, so that nothing commits and the job runs again later."""
    if isinstance(result, Snooze):
        raise result
    return returned_json(result, spec.name)
