"""``store.jobs``: writing, claiming, settling and inspecting job rows.

The enqueue methods take the adapter to write through (the store's own session or
transaction, or a caller's connection) and run that adapter's dialect. The worker's
methods (``claim``, ``complete`` and the rare outcomes, ``promote_due``) run on the
worker's backend as it is; the app's methods make the app's backend ready first.
``soniq_sync/storage/jobs.py`` is generated from this file.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from soniq.adapters.base import AsyncAdapter
from soniq.adapters.copy_format import Shared
from soniq.storage.records import ClaimedJob, Completion, LimitedClaim, Promoted, records

if TYPE_CHECKING:
    from soniq.storage.area import StoreAccess
    from soniq.storage.backend import StorageBackend

Record = dict[str, Any]

logger = logging.getLogger("soniq.waiting")

#: The longest payload one job-events NOTIFY carries (the server's limit is 8,000 bytes).
MAX_EVENTS_PAYLOAD = 7900


def event_payloads(events: Sequence[tuple[str, str]]) -> list[str]:
    """``(kind, id)`` pairs as NOTIFY payloads of ``kind:id,kind:id...``, each at most
    ``MAX_EVENTS_PAYLOAD`` bytes (ids are ASCII)."""
    payloads: list[str] = []
    items: list[str] = []
    size = 0
    for kind, job_id in events:
        item = f"{kind}:{job_id}"
        if items and size + 1 + len(item) > MAX_EVENTS_PAYLOAD:
            payloads.append(",".join(items))
            items, size = [], 0
        size += len(item) + (1 if items else 0)
        items.append(item)
    if items:
        payloads.append(",".join(items))
    return payloads


async def send_job_events(backend: StorageBackend, events: Sequence[tuple[str, str]]) -> None:
    """``store.jobs.send_events`` on ``backend`` (for the areas that write events too).

    The events are a courtesy to waiters, who re-read the rows and poll as well: a
    database that is unreachable now loses them with a warning, never the outcome
    that was written before them.
    """
    if not events or not backend.notifies:
        return
    query = backend.dialect.queries["notify_job_events"]
    try:
        for payload in event_payloads(events):
            await backend.rows(query, {"payload": payload})
    except backend.unavailable as exc:
        logger.warning("could not send %d job event(s) (%s)", len(events), str(exc).strip())


class Jobs:
    """The job rows of ``soniq_jobs`` (and the dead-letter lookups of job APIs)."""

    def __init__(self, store: StoreAccess) -> None:
        self._store = store

    async def _fetch(self, name: str, params: Mapping[str, Any]) -> builtins.list[Record]:
        backend = await self._store.ready()
        return await backend.fetch(backend.dialect.queries[name], params)

    # -- enqueue (on an adapter) -------------------------------------------------------

    async def insert(self, db: AsyncAdapter, params: dict[str, Any]) -> None:
        """Write one job row without a dedup key (``JobRow.params()``)."""
        await db.execute(db.dialect.queries["insert_job_plain"], params)

    async def insert_unique(self, db: AsyncAdapter, params: dict[str, Any]) -> str | None:
        """Write one row with a dedup key; its id, or None if a duplicate is queued."""
        inserted = await db.fetch(db.dialect.queries["insert_job"], params)
        return str(inserted[0][0]) if inserted else None

    async def queued_duplicate(self, db: AsyncAdapter, params: dict[str, Any]) -> str | None:
        """The id of the queued job with this row's task and dedup key, if any."""
        found = await db.fetch(db.dialect.queries["find_queued_duplicate"], params)
        return str(found[0][0]) if found else None

    async def copy(
        self, db: AsyncAdapter, ids: Sequence[str], args: Sequence[str], shared: Shared
    ) -> None:
        """Bulk-write rows without dedup keys or headers (COPY where the driver has it)."""
        await db.copy_jobs(db.dialect.bulk_statements(len(shared) > 5), ids, args, shared)

    async def insert_many(self, db: AsyncAdapter, params: dict[str, Any]) -> set[str]:
        """Write a batch in one INSERT that skips queued duplicates; the ids written."""
        return {row[0] for row in await db.fetch(db.dialect.queries["insert_jobs"], params)}

    async def queued_duplicates(
        self, db: AsyncAdapter, job_name: str, dedup_keys: Sequence[str | None]
    ) -> dict[str, str]:
        """Dedup key -> id of the queued job of ``job_name`` holding it."""
        lookup = {"job_name": job_name, "dedup_keys": list(dedup_keys)}
        return dict(await db.fetch(db.dialect.queries["find_queued_duplicates"], lookup))

    async def notify(self, db: AsyncAdapter, queue: str, scheduled_at: datetime | None) -> None:
        """Wake the workers of ``queue`` (and the promoters, for a job written for later)."""
        queries = db.dialect.queries
        await db.execute(queries["notify_queues"], {"queues": [queue]})
        if scheduled_at is not None:
            await db.execute(queries["notify_delayed"], {"scheduled_at": scheduled_at})

    async def wake(self, queues: Sequence[str]) -> None:
        """Wake the workers of ``queues`` (NOTIFY on soniq_new_job), on a connection
        of the worker's own."""
        backend = self._store.backend
        await backend.rows(backend.dialect.queries["notify_queues"], {"queues": list(queues)})

    async def send_events(self, events: Sequence[tuple[str, str]]) -> None:
        """Tell the waiters of watched jobs what happened: ``(kind, job id)`` pairs, kind
        one of ``s p r d c x`` (see ``notify_job_events``), in as few NOTIFYs as fit
        under the payload limit. Backends without NOTIFY send nothing (waiters poll)."""
        await send_job_events(self._store.backend, events)

    async def created_at(self, db: AsyncAdapter | None, job_id: str) -> datetime:
        """The stored ``created_at`` of a job, on ``db`` (or the store's own connection)."""
        params = {"id": job_id}
        if db is None:
            value: datetime = (await self._fetch("job_created_at", params))[0]["created_at"]
            return value
        found: datetime = (await db.fetch(db.dialect.queries["job_created_at"], params))[0][0]
        return found

    # -- the worker --------------------------------------------------------------------

    async def claim(
        self,
        worker_id: str,
        queues: Sequence[str] | None,
        limit: int,
        *,
        by_queue: bool = False,
    ) -> builtins.list[ClaimedJob]:
        """Take up to ``limit`` due jobs of ``queues`` (None: all) for ``worker_id``;
        ``by_queue``: queue by queue (PostgreSQL; see claim_jobs_by_queue), which is
        fast with the index by queue and still correct, only slower, without it."""
        backend = self._store.backend
        columns, rows = await backend.named_rows(
            backend.dialect.queries["claim_jobs_by_queue" if by_queue else "claim_jobs"],
            {"queues": queues, "limit": limit, "worker_id": worker_id},
        )
        return records(ClaimedJob, columns, rows) if rows else []

    async def claim_limited(
        self, worker_id: str, queues: Sequence[str] | None, after: str | None, keys: int, limit: int
    ) -> LimitedClaim:
        """Take up to ``limit`` limited jobs, round-robin over at most ``keys`` keys
        from just after ``after``, each within its limits (PostgreSQL only)."""
        backend = self._store.backend
        columns, rows = await backend.named_rows(
            backend.dialect.queries["claim_limited"],
            {
                "worker_id": worker_id,
                "queues": queues,
                "after": after,
                "keys": keys,
                "limit": limit,
            },
        )
        return _limited_claim(columns, rows)

    async def claim_gated(
        self, worker_id: str, queues: Sequence[str] | None, after: str | None, keys: int, limit: int
    ) -> LimitedClaim:
        """Take up to ``limit`` jobs of the queues among ``queues`` (None: all) that
        have limits of their own, each queue within its limits and each keyed job
        also within its key's; keyed jobs round-robin from just after ``after``
        (PostgreSQL only)."""
        backend = self._store.backend
        columns, rows = await backend.named_rows(
            backend.dialect.queries["claim_gated"],
            {
                "worker_id": worker_id,
                "queues": queues,
                "after": after,
                "keys": keys,
                "limit": limit,
            },
        )
        return _limited_claim(columns, rows)

    async def complete(self, batch: Sequence[Completion]) -> tuple[int, builtins.list[str]]:
        """Mark the claimed attempts in ``batch`` done: how many were still this
        worker's, and the ids of the watched ones among them (whose waiters the caller
        tells with :meth:`send_events`; usually none)."""
        backend = self._store.backend
        queries = backend.dialect.queries
        if len(batch) == 1:
            ((job_id, attempt, result),) = batch
            params = {"id": job_id, "attempt": attempt, "result": result}
            rows = await backend.rows(queries["complete_job"], params)
        else:
            rows = await backend.rows(queries["complete_jobs"], backend.dialect.completions(batch))
        return len(rows), [str(row[0]) for row in rows if row[1]]

    async def write_progress(self, batch: Sequence[Completion]) -> builtins.list[tuple[str, bool]]:
        """Store the latest progress of running attempts: ``(id, attempt, JSON text)``
        triples; ``(id, watched)`` of the rows written (those still this attempt's)."""
        backend = self._store.backend
        params = backend.dialect.completions(batch)  # the same three parallel arrays
        params["values"] = params.pop("results")
        return [
            (str(row[0]), bool(row[1]))
            for row in await backend.rows(backend.dialect.queries["write_progress"], params)
        ]

    async def _settle(self, name: str, params: dict[str, Any], event: str | None) -> bool:
        """Run an outcome's statement (``RETURNING id, watched[, status]``). A watched
        job's waiters are told ``event`` (None: nothing), or ``c`` if the job ended
        cancelled instead (its cancellation had been requested)."""
        backend = self._store.backend
        rows = await backend.rows(backend.dialect.queries[name], params)
        if rows and rows[0][1]:
            row = rows[0]
            kind = "c" if len(row) > 2 and row[2] == "cancelled" else event
            if kind is not None:
                await send_job_events(backend, [(kind, str(row[0]))])
        return bool(rows)

    async def retry(self, job: ClaimedJob, delay: float, error: str | None) -> bool:
        """Back to the queue after ``delay`` seconds, the attempt spent; False if the
        attempt was no longer this worker's (the same for the outcomes below)."""
        params = {"id": job.id, "attempt": job.attempt, "delay": delay, "error": error}
        return await self._settle("retry_job", params, "r")

    async def requeue(self, job: ClaimedJob, delay: float, error: str | None = None) -> bool:
        """Back to the queue after ``delay`` seconds without spending the attempt;
        ``error`` replaces ``last_error`` (None keeps it)."""
        # A job put off tells nobody; one that ended cancelled on request does.
        return await self._settle(
            "snooze_job",
            {"id": job.id, "attempt": job.attempt, "delay": delay, "error": error},
            None,
        )

    async def cancelled(self, job: ClaimedJob) -> bool:
        """End a running job as cancelled (on request)."""
        return await self._settle("cancel_running_job", {"id": job.id, "attempt": job.attempt}, "c")

    async def attempt_state(self, job: ClaimedJob, wait: float) -> str:
        """After its handler completed ``job`` in a transaction of its own: ``done``
        (committed), ``processing`` (not committed) or ``lost`` (no longer this
        attempt's). Waits up to ``wait`` seconds for a completing transaction still in
        flight (the backend's lock-timeout error after that)."""
        backend = self._store.backend
        params = {"id": job.id, "attempt": job.attempt, "wait_ms": max(1, int(wait * 1000))}
        rows = await backend.rows(backend.dialect.queries["attempt_state"], params)
        return str(rows[0][0])

    async def instance_id(self) -> str:
        """This database's id (``soniq_instance``), which ``ctx.complete`` checks."""
        backend = self._store.backend
        rows = await backend.rows(backend.dialect.queries["instance_id"], {})
        return str(rows[0][0])

    async def bury(
        self, job: ClaimedJob, reason: str | None, error: str | None, traceback: str | None
    ) -> bool:
        """Move the job to the dead-letter queue."""
        params = {
            "id": job.id,
            "attempt": job.attempt,
            "reason": reason,
            "error": error,
            "traceback": traceback,
        }
        return await self._settle("dead_letter_job", params, "x")

    async def promote_due(self, limit: int) -> Promoted:
        """Move up to ``limit`` delayed jobs now due into the claim."""
        backend = self._store.backend
        columns, rows = await backend.named_rows(
            backend.dialect.queries["promote_due_jobs"], {"limit": limit}
        )
        return records(Promoted, columns, rows)[0]

    # -- the app -----------------------------------------------------------------------

    async def get(self, job_id: str) -> Record | None:
        """The job's record, or its dead letter's (status ``dead_letter``), or None."""
        params = {"id": job_id}
        rows = await self._fetch("get_job", params)
        if not rows:
            rows = await self._fetch("get_dead_letter_job", params)
        return rows[0] if rows else None

    async def list(
        self,
        *,
        before: str | None,
        status: str | None,
        queue: str | None,
        job_name: str | None,
        since: datetime | None,
        until: datetime | None,
        limit: int,
        offset: int,
    ) -> builtins.list[Record]:
        """Job records, newest first, filtered (None: no filter) and paged."""
        params = {
            "before": before,
            "status": status,
            "queue": queue,
            "job_name": job_name,
            "since": since,
            "until": until,
            "limit": limit,
            "offset": offset,
        }
        return await self._fetch("list_jobs", params)

    async def cancel(self, job_id: str, lock_wait: float = 2.0) -> bool:
        """Cancel a queued job, or request a running one's cancellation (a watched
        queued job's waiters are told; a running one's hear when it stops).

        On PostgreSQL the row lock is waited for at most ``lock_wait`` seconds (the
        backend's lock-timeout error after that): a handler's transaction that is
        completing the job (``ctx.complete``) holds it until its commit."""
        backend = await self._store.ready()
        queries = backend.dialect.queries
        params = {"id": job_id}
        # Rows of (id, status, woke, watched).
        if backend.kind != "postgres":
            rows = await backend.rows(queries["cancel_job"], params)
        else:
            async with backend.transaction() as tx:
                await tx.execute(queries["set_lock_timeout"], {"ms": int(lock_wait * 1000)})
                rows = await tx.fetch(queries["cancel_job"], params)
        if rows and rows[0][3] and rows[0][1] == "cancelled":
            await send_job_events(self._store.backend, [("c", job_id)])
        return bool(rows)

    async def retry_now(self, job_id: str) -> Record | None:
        """Requeue a cancelled or waiting job now: its ``status``, ``attempts``,
        ``scheduled_at`` and whether it was ``requeued``; None if no such job."""
        rows = await self._fetch("retry_job_now", {"id": job_id})
        return rows[0] if rows else None

    async def result(self, job_id: str, ttl: float) -> tuple[bool, Any]:
        """``(found, result)`` of a done job whose result is younger than ``ttl`` s."""
        rows = await self._fetch("get_result", {"id": job_id, "ttl": ttl})
        return (True, rows[0]["result"]) if rows else (False, None)

    async def watch(self, job_ids: Sequence[str], ttl: float) -> dict[str, Record]:
        """Mark the live jobs among ``job_ids`` watched and read every one's state (see
        ``watch_jobs``): id -> row of ``id``, ``status``, ``result``, ``last_error``,
        ``attempts``, ``progress``, ``finished_at`` and ``expired`` (a done job older
        than ``ttl`` s). An id left out has no row: the job is gone."""
        params = {"ids": list(job_ids), "ttl": ttl}
        found = {row["id"]: row for row in await self._fetch("watch_jobs", params)}
        missing = [job_id for job_id in job_ids if job_id not in found]
        if missing:  # changed under the statement, or gone: read again, afresh
            found.update(await self.states(missing, ttl))
        return found

    async def states(self, job_ids: Sequence[str], ttl: float) -> dict[str, Record]:
        """The state of each of ``job_ids``, as :meth:`watch` reads it, without marking."""
        rows = await self._fetch("job_states", {"ids": list(job_ids), "ttl": ttl})
        return {row["id"]: row for row in rows}

    async def delete(self, job_id: str) -> bool:
        """Delete a job row whatever its status."""
        return bool(await self._fetch("delete_job", {"id": job_id}))

    async def queue_stats(self) -> builtins.list[Record]:
        """Per-queue counts by status (and dead-lettered), by queue name."""
        return await self._fetch("queue_stats", {})

    async def queue_totals(self) -> Record:
        """Counts over every queue: queued, processing, done, cancelled, dead_letter."""
        return (await self._fetch("queue_totals", {}))[0]

    async def queue_status(self) -> builtins.list[Record]:
        """Per-queue depth, ages and rates, for ``app.status()``."""
        return await self._fetch("queue_status", {})

    async def task_names_in_use(self) -> builtins.list[Record]:
        """Task names of queued, running or dead-lettered jobs, with their counts."""
        return await self._fetch("task_names_in_use", {})

    async def prune_cutoff(self, older_than: float) -> datetime:
        """The database's ``now - older_than`` seconds."""
        rows = await self._fetch("prune_cutoff", {"older_than": older_than})
        cutoff: datetime = rows[0]["cutoff"]
        return cutoff

    async def prune_batch(self, cutoff: datetime, limit: int, *, exclusive: bool) -> int | None:
        """Delete up to ``limit`` jobs finished before ``cutoff``, oldest first; how many,
        or None when ``exclusive`` and another worker is deleting."""
        backend = await self._store.ready()
        return await backend.prune_batch(cutoff, limit, exclusive=exclusive)

    # -- test helpers (soniq.testing) --------------------------------------------------

    async def enqueued(self, job_name: str | None, queue: str | None) -> builtins.list[Record]:
        """Queued jobs, oldest first, optionally of one task and queue."""
        return await self._fetch("testing_enqueued_jobs", {"job_name": job_name, "queue": queue})

    async def make_due(self, queues: Sequence[str] | None) -> None:
        """Make every queued job of ``queues`` (None: all) due now."""
        await self._fetch("testing_make_due", {"queues": queues})

    async def runnable(self, queues: Sequence[str] | None) -> builtins.list[Record]:
        """The queued jobs of ``queues`` that are due now."""
        return await self._fetch("testing_runnable", {"queues": queues})


def _limited_claim(columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> LimitedClaim:
    """A limited or gated claim's rows: its jobs, then its one row of id NULL."""
    *jobs, meta = rows
    wake_in, cursor = meta[-2], meta[-1]
    claimed = records(ClaimedJob, columns[:-2], [row[:-2] for row in jobs]) if jobs else []
    return LimitedClaim(claimed, wake_in, cursor)
