"""The dead-letter queue: jobs that ran out of attempts or can never run.

``app.dead_letter`` lists, counts, replays, purges, exports and imports the rows of
``soniq_dead_letter_jobs``. ``soniq_sync``'s twin of this module is generated from it
by ``tools/async_to_sync.py``.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from soniq.enqueue.ids import new_job_id, new_job_ids
from soniq.errors import INVALID_ARGUMENT, JOB_NOT_FOUND, SoniqError
from soniq.ops.dead_letter_file import (
    ExportFormat,
    ExportWriter,
    ImportResult,
    Writable,
    parse_lines,
)
from soniq.ops.filters import DeadLetterFilter
from soniq.storage.store import Store

Progress = Callable[[int], None]

#: Rows per statement for the bulk operations (replay_many, export, import_).
BATCH = 500


class DeadLetterQueue:
    """``app.dead_letter``: inspect, replay, purge, export and import dead-lettered jobs.

    Every method that selects dead letters takes the same filters, all optional:
    ``job_name`` and ``queue`` (exact), ``reason`` (a case-insensitive substring of
    the reason or of the last error), and ``since``/``until`` (aware datetimes on
    ``dead_lettered_at``; since inclusive, until exclusive). Records are dicts with the
    columns of ``soniq_dead_letter_jobs``, newest first.
    """

    def __init__(
        self,
        store: Store,
        check_id: Callable[[object], str],
        check_page: Callable[[object, object], None],
    ) -> None:
        self._store = store
        self._check_id = check_id
        self._check_page = check_page

    async def list(
        self,
        *,
        job_name: str | None = None,
        queue: str | None = None,
        reason: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Dead-letter records matching the filters, newest first, a page at a time."""
        where = DeadLetterFilter.check(job_name, queue, reason, since, until)
        self._check_page(limit, offset)
        return await self._store.dead_letters.list(where.params(), limit, offset)

    async def count(
        self,
        *,
        job_name: str | None = None,
        queue: str | None = None,
        reason: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        """How many dead letters match the filters."""
        where = DeadLetterFilter.check(job_name, queue, reason, since, until)
        return await self._store.dead_letters.count(where.params())

    async def get(self, job_id: str) -> dict[str, Any] | None:
        """One dead-letter record, or None."""
        return await self._store.dead_letters.get(self._check_id(job_id))

    async def replay(self, job_id: str) -> str:
        """Queue a fresh copy of a dead-lettered job; return the new job's id.

        The dead-letter record stays, with ``resurrection_count`` raised by one.
        """
        new_id = await self._store.dead_letters.replay(self._check_id(job_id), new_job_id())
        if new_id is None:
            raise SoniqError(
                JOB_NOT_FOUND,
                f"No dead-lettered job {job_id!r}. List them with app.dead_letter.list().",
                job_id=job_id,
            )
        return new_id

    async def replay_many(
        self,
        *,
        job_name: str | None = None,
        queue: str | None = None,
        reason: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
        progress: Progress | None = None,
    ) -> builtins.list[str]:
        """Replay every matching dead letter (at most ``limit``); return the new job ids.

        Newest first, :data:`BATCH` per statement: each batch is replayed whole or
        not at all, and wakes the workers once. No record is replayed twice by one
        call, even when replayed jobs fail again and are dead-lettered meanwhile.
        Without filters, every dead letter is replayed. ``progress(n)`` is called
        after each batch with the number it replayed.
        """
        where = DeadLetterFilter.check(job_name, queue, reason, since, until)
        _check_limit(limit)
        filters = where.params()
        before: tuple[datetime, str] | None = None
        new_ids: list[str] = []
        while limit is None or len(new_ids) < limit:
            size = BATCH if limit is None else min(BATCH, limit - len(new_ids))
            rows = await self._store.dead_letters.replay_page(filters, before, new_job_ids(size))
            if not rows:
                break
            new_ids.extend(str(row["id"]) for row in rows)
            before = (rows[-1]["dead_lettered_at"], rows[-1]["dead_letter_id"])
            if progress is not None:
                progress(len(rows))
            if len(rows) < size:
                break
        return new_ids

    async def purge(
        self,
        *,
        job_name: str | None = None,
        queue: str | None = None,
        reason: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        all: bool = False,
    ) -> int:
        """Delete the matching dead letters; return how many were deleted.

        At least one filter is required, so that a forgotten argument cannot empty
        the table: pass ``all=True`` (and no filter) to delete every dead letter.
        """
        where = DeadLetterFilter.check(job_name, queue, reason, since, until)
        where.check_purge(all)
        return await self._store.dead_letters.purge(where.params())

    async def export(
        self,
        file: Writable,
        *,
        job_name: str | None = None,
        queue: str | None = None,
        reason: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        progress: Progress | None = None,
        format: ExportFormat = "jsonl",
    ) -> int:
        """Write the matching dead letters to ``file``; return the count.

        ``file`` is a text file open for writing. ``format`` is ``"jsonl"`` (one line
        per dead letter, which :meth:`import_` reads back), ``"json"`` (one array of
        the same objects) or ``"csv"`` (a header row, ``args`` as JSON text). Newest
        first, every column, times in ISO 8601. ``progress(n)`` is called after each
        batch written.
        """
        where = DeadLetterFilter.check(job_name, queue, reason, since, until)
        writer = ExportWriter(file, format)
        filters = where.params()
        before: tuple[datetime, str] | None = None
        written = 0
        while True:
            rows = await self._store.dead_letters.page(filters, before, BATCH)
            for row in rows:
                writer.write(row)
            written += len(rows)
            if progress is not None and rows:
                progress(len(rows))
            if len(rows) < BATCH:
                writer.finish()
                return written
            before = (rows[-1]["dead_lettered_at"], rows[-1]["id"])

    async def import_(self, file: Iterable[str]) -> ImportResult:
        """Load dead letters written by :meth:`export`; return ``(imported, skipped)``.

        ``file`` is a text file open for reading (or any iterable of lines). Every
        line is checked first: a bad one raises SONIQ_INVALID_EXPORT naming its
        number, and nothing is written. The rows are then written in one transaction.
        Ids already in the table are skipped and counted in ``skipped``.
        """
        rows = parse_lines(file)
        batches = [
            json.dumps(rows[start : start + BATCH], ensure_ascii=False)
            for start in range(0, len(rows), BATCH)
        ]
        imported = await self._store.dead_letters.import_batches(batches)
        return ImportResult(imported=imported, skipped=len(rows) - imported)


def _check_limit(limit: object) -> None:
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise SoniqError(INVALID_ARGUMENT, f"limit must be None or an int >= 0, got {limit!r}.")
