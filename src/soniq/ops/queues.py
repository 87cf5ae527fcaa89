"""``app.queues``: pause and resume queues across the whole fleet, and give a queue
limits of its own.

A pause is a row of ``soniq_queues`` that the claim statement reads itself, so it
holds on every worker, including workers that missed the notification, poll without
LISTEN, or start later; ``until=`` lifts it at that time with no process acting.
Pausing gates dispatch only: enqueue goes on, and jobs that fall due, retry or are
recovered from a dead worker wait with the rest until the queue is resumed. Running
jobs finish. A queue's own limits (``set_limits``) cap how many of its jobs run at
once and how fast they start, whatever their keys, read by the claim the same way.
PostgreSQL only. ``soniq_sync``'s twin of this module is generated
from it by ``tools/async_to_sync.py``.
"""

from __future__ import annotations

import builtins
import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from soniq._acompat import sleep
from soniq.core.limits import RateLimit, check_count, check_rate
from soniq.core.registry import check_queue
from soniq.enqueue.plan import run_at_to_datetime
from soniq.enqueue.producer import process_producer_id
from soniq.errors import (
    INVALID_ARGUMENT,
    PAUSE_NOT_CONFIRMED,
    BackendUnsupportedError,
    SoniqError,
)
from soniq.settings import SoniqSettings
from soniq.storage.store import Store
from soniq.storage.urls import storage_kind

#: The queue name that pauses every queue at once.
ALL_QUEUES = "*"


@dataclass(frozen=True)
class QueueInfo:
    """One queue's state: its pause (if any), its own limits (None: no such limit)
    and, from :meth:`QueueControl.list`, how many of its jobs are queued and running
    (None where not counted)."""

    name: str
    paused: bool
    paused_at: datetime | None = None
    paused_until: datetime | None = None
    reason: str | None = None
    paused_by: str | None = None
    queued: int | None = None
    processing: int | None = None
    concurrency: int | None = None
    rate_limit: int | None = None
    rate_period: float | None = None
    burst: int = 1

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
            "concurrency": self.concurrency,
            "rate_limit": self.rate_limit,
            "rate_period": self.rate_period,
            "burst": self.burst,
        }


class QueueControl:
    """``app.queues``: ``pause``, ``resume`` and ``list``; a queue's own limits
    (``set_limits``, ``clear_limits``); the optional index by queue (``add_index``,
    ``drop_index``, ``has_index``)."""

    def __init__(self, store: Store, settings: SoniqSettings) -> None:
        self._store = store
        self._settings = settings

    async def pause(
        self,
        name: str,
        until: datetime | timedelta | float | None = None,
        reason: str | None = None,
        *,
        wait: bool = True,
        timeout: float = 30.0,
    ) -> QueueInfo:
        """Stop every worker from starting jobs of queue ``name`` (``"*"``: all queues).

        ``until`` (an aware datetime, or a ``timedelta`` or seconds from now) lifts
        the pause by itself; None keeps it until :meth:`resume`. ``reason`` is kept
        for operators. Pausing a paused queue replaces its end and reason.

        The pause holds for every claim that starts once it is written. With ``wait``
        (the default), this also waits until every live worker has given back the
        jobs of the queue it had claimed and not started (their attempts refunded):
        then no job of the queue starts anywhere after this returns. A worker that
        does not confirm within ``timeout`` seconds (one that does not listen
        confirms at its next heartbeat) raises ``SONIQ_PAUSE_NOT_CONFIRMED``, naming
        it; the pause stays in force.
        """
        self._postgres_only("pause")
        queue = _check_name(name, "pause")
        end = None if until is None else _check_until(until)
        if reason is not None and (not isinstance(reason, str) or len(reason) > 1000):
            raise SoniqError(
                INVALID_ARGUMENT,
                f"queues.pause(reason=) takes text of at most 1000 characters, got {reason!r}.",
            )
        if not isinstance(wait, bool):
            raise SoniqError(INVALID_ARGUMENT, f"queues.pause(wait=) takes a bool, got {wait!r}.")
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not 0 <= timeout < math.inf
        ):
            raise SoniqError(
                INVALID_ARGUMENT,
                f"queues.pause(timeout=) takes seconds >= 0 to wait for the workers, got "
                f"{timeout!r}.",
            )
        by = self._settings.producer_id or process_producer_id()
        row = await self._store.queues.pause(queue, end, reason, by)
        info = _info(row)
        if wait:
            await self._confirmed(info, int(row["control_version"]), float(timeout))
        return info

    async def _confirmed(self, info: QueueInfo, version: int, timeout: float) -> None:
        """Wait until every live worker has applied ``version`` (the pause's)."""
        live_for = self._settings.heartbeat_timeout
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            waiting = await self._store.queues.unconfirmed(version, live_for)
            if not waiting:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                break
            await sleep(min(delay, left))
            delay = min(delay * 2, 0.25)
        names = [f"{w['hostname']}:{w['pid']} ({w['id']})" for w in waiting]
        raise SoniqError(
            PAUSE_NOT_CONFIRMED,
            f"Queue {info.name!r} is paused, and no claim takes its jobs any more, but "
            f"{len(waiting)} live worker(s) did not confirm within {timeout:g}s that they "
            f"gave back the jobs they had claimed and not started: {', '.join(names)}. "
            "Those jobs may still start there.",
            suggestions=[
                "check that these workers are running and can reach the database",
                "wait longer with timeout=, or pass wait=False not to wait",
            ],
            queue=info.name,
            pause=info.as_dict(),
            unconfirmed=waiting,
        )

    async def resume(self, name: str) -> bool:
        """Let workers take jobs of queue ``name`` again (``"*"``: lift the pause of
        every queue at once; queues paused by name stay paused). False if it was not
        paused. Idle workers of the queue wake at once."""
        self._postgres_only("resume")
        return await self._store.queues.resume(_check_name(name, "resume"))

    async def set_limits(
        self,
        name: str,
        concurrency: int | None = None,
        rate: RateLimit | None = None,
    ) -> QueueInfo:
        """Limit queue ``name`` as a whole, on every worker, from its next claim.

        ``concurrency`` is how many of the queue's jobs may run at once across the
        fleet (0 holds them all); ``rate`` a :class:`~soniq.RateLimit` without
        ``key`` or ``group``: at most ``limit + burst - 1`` of the queue's jobs start
        in any window of ``per`` seconds. Both count every job of the queue, with or
        without a limit key; a keyed job must also be within its key's limits. The two
        replace the queue's limits as a whole (the one left out is no limit), and
        stay, through worker restarts, until :meth:`clear_limits`. Jobs running when
        a limit is lowered finish; none starts until the queue is under it.
        """
        self._postgres_only("set_limits")
        if name == ALL_QUEUES:
            raise SoniqError(
                INVALID_ARGUMENT,
                "queues.set_limits() takes one queue's name, not '*'. To cap what runs "
                "everywhere, start fewer or smaller workers, or set each queue's limits.",
            )
        queue = _check_name(name, "set_limits")
        if concurrency is None and rate is None:
            raise SoniqError(
                INVALID_ARGUMENT,
                f"queues.set_limits({queue!r}) needs concurrency=N (N >= 0, 0 holds every "
                "job) or rate=RateLimit(limit, per=seconds, burst=1), or both. To lift the "
                "queue's limits, call queues.clear_limits().",
            )
        if concurrency is not None:
            check_count(
                concurrency, "concurrency=", "queues.set_limits()", least=0, code=INVALID_ARGUMENT
            )
        if rate is not None:
            _check_queue_rate(rate)
        row = await self._store.queues.set_limits(
            queue,
            concurrency,
            None if rate is None else rate.limit,
            None if rate is None else rate.period,
            1 if rate is None else rate.burst,
        )
        return _info(row)

    async def clear_limits(self, name: str) -> bool:
        """Drop queue ``name``'s own limits (its jobs' key limits stay); False if it
        had none. Idle workers wake at once."""
        self._postgres_only("clear_limits")
        return await self._store.queues.clear_limits(_check_name(name, "clear_limits"))

    async def list(self) -> builtins.list[QueueInfo]:
        """Every queue with jobs queued or running, a pause in force, or limits of its
        own, by name."""
        self._postgres_only("list")
        return [_info(row) for row in await self._store.queues.list()]

    async def paused(self) -> builtins.list[QueueInfo]:
        """The pauses in force now (none on SQLite and memory, which cannot pause)."""
        if storage_kind(self._settings) != "postgres":
            return []
        return [_info(row) for row in await self._store.queues.paused()]

    async def limited(self) -> builtins.list[QueueInfo]:
        """The queues with limits of their own, by name (none on SQLite and memory,
        which cannot limit a queue)."""
        if storage_kind(self._settings) != "postgres":
            return []
        return [_info(row) for row in await self._store.queues.limited()]

    async def add_index(self) -> bool:
        """Build the index by queue, so that workers serving only some queues (their
        ``--queues``, or every queue but the paused ones) claim from each queue's own
        part of it: a large backlog in another queue is then never walked. Built
        CONCURRENTLY (enqueues and claims go on; on a big table it takes a while),
        and running workers are told. Each enqueue then writes one more index entry.
        False if it was already there."""
        self._postgres_only("add_index")
        return await self._store.queues.add_index()

    async def drop_index(self) -> bool:
        """Drop the index by queue (workers go back to the global claim); False if it
        was not there."""
        self._postgres_only("drop_index")
        return await self._store.queues.drop_index()

    async def has_index(self) -> bool:
        """Whether the index by queue is there and usable."""
        self._postgres_only("has_index")
        return bool((await self._store.queues.index_state())["valid"])

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


def _check_queue_rate(rate: object) -> None:
    if not isinstance(rate, RateLimit):
        raise SoniqError(
            INVALID_ARGUMENT,
            "queues.set_limits(rate=) takes RateLimit(limit, per=seconds, burst=1) (or None: "
            f"no rate limit), got {rate!r}.",
        )
    if rate.key is not None or rate.group is not None:
        raise SoniqError(
            INVALID_ARGUMENT,
            "queues.set_limits(rate=) counts every start of the queue, so its RateLimit "
            f"takes no key= or group= (got key={rate.key!r}, group={rate.group!r}). For a "
            "rate per key, declare it on the task (@app.job(rate_limit=...)) or use "
            "app.limits.set().",
        )
    check_rate(rate, "queues.set_limits(rate=)", INVALID_ARGUMENT)


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
        concurrency=row.get("concurrency"),
        rate_limit=row.get("rate_limit"),
        rate_period=row.get("rate_period"),
        burst=row.get("burst") or 1,
    )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
