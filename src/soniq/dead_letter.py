"""The dead-letter queue: jobs that ran out of attempts or can never run."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from soniq.errors import JOB_NOT_FOUND, SoniqError
from soniq.ids import new_job_id

Fetch = Callable[[str, dict[str, Any]], Awaitable[list[dict[str, Any]]]]


class DeadLetterQueue:
    """``app.dead_letter``: inspect dead-lettered jobs and replay them."""

    def __init__(
        self,
        fetch: Fetch,
        check_id: Callable[[object], str],
        check_page: Callable[[object, object], None],
    ) -> None:
        self._fetch = fetch
        self._check_id = check_id
        self._check_page = check_page

    async def list(
        self,
        *,
        job_name: str | None = None,
        queue: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Dead-letter records, newest first, optionally filtered by task name and queue."""
        self._check_page(limit, offset)
        return await self._fetch(
            "dead_letter_list",
            {"job_name": job_name, "queue": queue, "limit": limit, "offset": offset},
        )

    async def get(self, job_id: str) -> dict[str, Any] | None:
        """One dead-letter record, or None."""
        rows = await self._fetch("dead_letter_get", {"id": self._check_id(job_id)})
        return rows[0] if rows else None

    async def replay(self, job_id: str) -> str:
        """Queue a fresh copy of a dead-lettered job; return the new job's id.

        The dead-letter record stays, with ``resurrection_count`` raised by one.
        """
        rows = await self._fetch(
            "dead_letter_replay", {"id": self._check_id(job_id), "new_id": new_job_id()}
        )
        if not rows:
            raise SoniqError(
                JOB_NOT_FOUND,
                f"No dead-lettered job {job_id!r}. List them with app.dead_letter.list().",
                job_id=job_id,
            )
        return str(rows[0]["id"])
