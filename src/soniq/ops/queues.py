"""``app.queues``: pause and resume queues across the whole fleet.

A pause is a row of ``soniq_queues`` that the claim statement reads itself, so it
holds on every worker, including workers that missed the notification, poll without
LISTEN, or start later; ``until=`` lifts it at that time with no process acting.
Pausing gates dispatch only: enqueue goes on, and jobs that fall due, retry or are
recovered from a dead worker wait with the rest until the queue is resumed. Running
jobs finish. PostgreSQL only. ``soniq_sync``'s twin of this module is generated
from it by ``tools/async_to_sync.py``.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from soniq.core.registry import check_queue
from soniq.enqueue.plan import run_at_to_datetime
from soniq.enqueue.producer import process_producer_id
from soniq.errors import INVALID_ARGUMENT, BackendUnsupportedError, SoniqError
from soniq.settings import SoniqSettings
from soniq.storage.store import Store
from soniq.storage.urls import storage_kind

#: The queue name that pauses every queue at once.
ALL_QUEUES = "*"


@dataclass(frozen=True)
class QueueInfo:
    """One queue's state: its pause (if any) and, from :meth:`QueueControl.list`, how
    many of its jobs are queued and running (None where not counted)."""

    name: str
    paused: bool
    paused_at: datetime | None = None
    paused_until: datetime | None = None
    reason: str | None = None
    paused_by: str | None = None
    queued: int | None = None
    processing: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The fields as a JSON-friendly dict (times as ISO 8601 text)."""
        return {
            "name": self.name,
            "paused": self.paused,
            "paused_at": _iso(self.paused_at),
            "paused_until": _iso(self.paused_until),
            "reason": self.reason,
            "paused_by": self.paused_by,
            "queued": self.queued,
            "processing": self.processing,
        }


class QueueControl:
    """``app.queues``: ``pause``, ``resume`` and ``list``."""

    def __init__(self, store: Store, settings: SoniqSettings) -> None:
        self._store = store
        self._settings = settings

    async def pause(
        self,
        name: str,
        until: datetime | timedelta | float | None = None,
        reason: str | None = None,
    ) -> QueueInfo:
        """Stop every worker from starting jobs of queue ``name`` (``"*"``: all queues).

        ``until`` (an aware datetime, or a ``timedelta`` or seconds from now) lifts
        the pause by itself; None keeps it until :meth:`resume`. ``reason`` is kept
        for operators. Pausing a paused queue replaces its end and reason. Once this
        returns, no claim that starts takes a job of the queue; a job a worker had
        already claimed and not started yet may still start (see the flow-control
        guide).
        """
        self._postgres_only("pause")
        queue = _check_name(name, "pause")
        end = None if until is None else _check_until(until)
        if reason is not None and (not isinstance(reason, str) or len(reason) > 1000):
            raise SoniqError(
                INVALID_ARGUMENT,
                f"queues.pause(reason=) takes text of at most 1000 characters, got {reason!r}.",
            )
        by = self._settings.producer_id or process_producer_id()
        row = await self._store.queues.pause(queue, end, reason, by)
        return _info(row)

    async def resume(self, name: str) -> bool:
        """Let workers take jobs of queue ``name`` again (``"*"``: lift the pause of
        every queue at once; queues paused by name stay paused). False if it was not
        paused. Idle workers of the queue wake at once."""
        self._postgres_only("resume")
        return await self._store.queues.resume(_check_name(name, "resume"))

    async def list(self) -> builtins.list[QueueInfo]:
        """Every queue with jobs queued or running, or a pause in force, by name."""
        self._postgres_only("list")
        return [_info(row) for row in await self._store.queues.list()]

    async def paused(self) -> builtins.list[QueueInfo]:
        """The pauses in force now (none on SQLite and memory, which cannot pause)."""
        if storage_kind(self._settings) != "postgres":
            return []
        return [_info(row) for row in await self._store.queues.paused()]

    def _postgres_only(self, call: str) -> None:
        kind = storage_kind(self._settings)
        if kind != "postgres":
            raise BackendUnsupportedError(
                f"app.queues.{call}() needs the PostgreSQL backend; this app keeps its jobs "
                f"in {kind}, where a queue cannot be paused. Stop the worker instead, or "
                "use a PostgreSQL database URL.",
                backend=kind,
            )


def _check_name(name: object, call: str) -> str:
    if name == ALL_QUEUES:
        return ALL_QUEUES
    return check_queue(name, f"queues.{call}()")


def _check_until(until: object) -> datetime:
    if (
        until is None
        or isinstance(until, bool)
        or not isinstance(until, (datetime, timedelta, int, float))
    ):
        raise SoniqError(
            INVALID_ARGUMENT,
            "queues.pause(until=) takes an aware datetime, a timedelta or seconds from now "
            f"(or None: until resumed), got {until!r}.",
        )
    end = run_at_to_datetime(until, "queues.pause(until=)")
    if end <= datetime.now(timezone.utc):
        raise SoniqError(
            INVALID_ARGUMENT,
            f"queues.pause(until=) must be in the future, got {end.isoformat()}; pass None "
            "to pause until resume(), or a later time.",
        )
    return end


def _info(row: dict[str, Any]) -> QueueInfo:
    return QueueInfo(
        name=row["name"],
        paused=bool(row.get("paused", row.get("paused_at") is not None)),
        paused_at=row.get("paused_at"),
        paused_until=row.get("paused_until"),
        reason=row.get("paused_reason"),
        paused_by=row.get("paused_by"),
        queued=row.get("queued"),
        processing=row.get("processing"),
    )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
