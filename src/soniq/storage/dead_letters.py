"""``store.dead_letters``: the rows of ``soniq_dead_letter_jobs``.

Every selecting method takes ``where``, the filter's parameters (``job_name``,
``queue``, ``reason`` pattern, ``since``, ``until``; None: no filter), which the
queries share as one SQL fragment. ``soniq_sync/storage/dead_letters.py`` is
generated from this file.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from soniq.storage.area import StoreAccess

Record = dict[str, Any]
Where = Mapping[str, Any]


class DeadLetters:
    """Listing, replaying, purging, exporting and importing dead letters."""

    def __init__(self, store: StoreAccess) -> None:
        self._store = store

    async def _fetch(self, name: str, params: Mapping[str, Any]) -> builtins.list[Record]:
        backend = await self._store.ready()
        return await backend.fetch(backend.dialect.queries[name], params)

    async def list(self, where: Where, limit: int, offset: int) -> builtins.list[Record]:
        """Matching records, newest first, one page."""
        return await self._fetch("dead_letter_list", {**where, "limit": limit, "offset": offset})

    async def count(self, where: Where) -> int:
        """How many dead letters match."""
        return int((await self._fetch("dead_letter_count", where))[0]["count"])

    async def get(self, job_id: str) -> Record | None:
        """One record, or None."""
        rows = await self._fetch("dead_letter_get", {"id": job_id})
        return rows[0] if rows else None

    async def replay(self, job_id: str, new_id: str) -> str | None:
        """Queue a copy of the dead letter as job ``new_id``; its id, or None if none."""
        rows = await self._fetch("dead_letter_replay", {"id": job_id, "new_id": new_id})
        return str(rows[0]["id"]) if rows else None

    async def replay_page(
        self,
        where: Where,
        before: tuple[datetime, str] | None,
        new_ids: Sequence[str],
    ) -> builtins.list[Record]:
        """Replay one page (as many as ``new_ids``) of matches older than ``before``.

        Each record: the new job's ``id``, the ``dead_letter_id`` and its
        ``dead_lettered_at`` (the next page's ``before``).
        """
        params = {
            **where,
            "before_at": None if before is None else before[0],
            "before_id": None if before is None else before[1],
            "limit": len(new_ids),
            "new_ids": list(new_ids),
        }
        return await self._fetch("dead_letter_replay_batch", params)

    async def purge(self, where: Where) -> int:
        """Delete the matches; how many."""
        return int((await self._fetch("dead_letter_purge", where))[0]["count"])

    async def page(
        self, where: Where, before: tuple[datetime, str] | None, limit: int
    ) -> builtins.list[Record]:
        """Up to ``limit`` matches older than ``before`` (dead-lettered time, id)."""
        params = {
            **where,
            "before_at": None if before is None else before[0],
            "before_id": None if before is None else before[1],
            "limit": limit,
        }
        return await self._fetch("dead_letter_page", params)

    async def import_batches(self, batches: Sequence[str]) -> int:
        """Write export batches (each a JSON array of records) in one transaction;
        how many rows were written (ids already present are skipped)."""
        backend = await self._store.ready()
        query = backend.dialect.queries["dead_letter_import"]
        imported = 0
        async with backend.transaction() as tx:
            for batch in batches:
                found = await tx.fetch(query, {"rows": batch})
                imported += int(found[0][0]) if found else 0
        return imported
