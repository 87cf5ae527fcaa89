"""``app.limits``: see and change concurrency and rate limits across the whole fleet.

A limit group's row in ``soniq_limit_groups`` is what the limited claim reads (see
migration 0010), so a change here holds on every worker from its next claim, with no
restart. Workers write what their code declares when they start; a limit set here
(source ``runtime``) wins over it, through restarts, until :meth:`LimitControl.clear`.
A block holds one key's jobs back until a given time. PostgreSQL only.
``soniq_sync``'s twin of this module is generated from it by ``tools/async_to_sync.py``.
"""

from __future__ import annotations

import builtins
import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from soniq.core.limits import RateLimit, check_count, check_limit_key, check_rate
from soniq.enqueue.plan import run_at_to_datetime
from soniq.errors import INVALID_ARGUMENT, BackendUnsupportedError, SoniqError
from soniq.settings import SoniqSettings
from soniq.storage.store import Store
from soniq.storage.urls import storage_kind

#: How many of its busiest keys ``list(keys=True)`` gives with each group.
KEYS_PER_GROUP = 10
#: The longest group name (a key, group and value, is at most 500 characters).
_MAX_GROUP = 500


@dataclass(frozen=True)
class LimitKeyInfo:
    """One limit key (``"<group>"`` or ``"<group>:<value>"``): how many of its jobs
    run and wait now, and until when it is blocked (None: not blocked)."""

    key: str
    running: int
    queued: int
    blocked_until: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        """The fields as a JSON-friendly dict (times as ISO 8601 text)."""
        return {
            "key": self.key,
            "running": self.running,
            "queued": self.queued,
            "blocked_until": _iso(self.blocked_until),
        }


@dataclass(frozen=True)
class LimitGroupInfo:
    """One limit group's limits, where they come from, and its jobs.

    ``concurrency`` None is no concurrency limit (0 holds every job); ``rate_limit``
    starts per ``rate_period`` seconds, with ``burst``, or None for no rate limit.
    ``source`` is ``code`` (what the workers' code declares), ``runtime`` (set by
    :meth:`LimitControl.set`), or ``missing`` for a group that has jobs but no row
    (no worker declared it yet; its jobs run one at a time). ``declared`` is what the
    code declares (None if no worker did), which :meth:`LimitControl.clear` goes back
    to. ``running`` and ``queued`` count its jobs now (None where not counted) and
    ``keys``, from ``list(keys=True)``, its busiest keys (None where not listed).
    """

    name: str
    concurrency: int | None
    rate_limit: int | None
    rate_period: float | None
    burst: int
    source: str
    declared: dict[str, Any] | None = field(default=None, hash=False)
    updated_at: datetime | None = None
    running: int | None = None
    queued: int | None = None
    keys: tuple[LimitKeyInfo, ...] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The fields as a JSON-friendly dict (times as ISO 8601 text)."""
        return {
            "name": self.name,
            "concurrency": self.concurrency,
            "rate_limit": self.rate_limit,
            "rate_period": self.rate_period,
            "burst": self.burst,
            "source": self.source,
            "declared": self.declared,
            "updated_at": _iso(self.updated_at),
            "running": self.running,
            "queued": self.queued,
            "keys": None if self.keys is None else [k.as_dict() for k in self.keys],
        }


class LimitControl:
    """``app.limits``: ``set``, ``clear``, ``block``, ``unblock`` and ``list``."""

    def __init__(self, store: Store, settings: SoniqSettings) -> None:
        self._store = store
        self._settings = settings

    async def set(
        self,
        group: str,
        concurrency: int | None = None,
        rate: RateLimit | None = None,
    ) -> LimitGroupInfo:
        """Set group ``group``'s limits on every worker, from its next claim.

        ``concurrency`` is how many of a key's jobs may run at once (0 holds them
        all); ``rate`` a :class:`~soniq.RateLimit` whose ``limit``, ``per`` and
        ``burst`` are used (its ``key`` and ``group`` are not: a job's key is fixed
        when it is enqueued). The two replace the group's limits as a whole, so the
        one left out is no limit. The setting wins over what the code declares,
        also for workers that start later, until :meth:`clear`. Idle workers wake
        at once. A group no code declares yet may be set too.
        """
        self._postgres_only("set")
        name = _check_group(group, "set")
        if concurrency is None and rate is None:
            raise SoniqError(
                INVALID_ARGUMENT,
                f"limits.set({name!r}) needs concurrency=N (N >= 0, 0 holds every job) or "
                "rate=RateLimit(limit, per=seconds, burst=1), or both. To go back to the "
                "limits the code declares, call limits.clear().",
            )
        if concurrency is not None:
            check_count(concurrency, "concurrency=", "limits.set()", least=0, code=INVALID_ARGUMENT)
        if rate is not None:
            _check_rate(rate)
        row = await self._store.limits.set(
            name,
            concurrency,
            None if rate is None else rate.limit,
            None if rate is None else rate.period,
            1 if rate is None else rate.burst,
        )
        return _group(row)

    async def clear(self, group: str) -> bool:
        """Drop the limits :meth:`set` gave group ``group``: it goes back to what the
        code declares (a group no code declares is forgotten, and its jobs then run
        one at a time). False if the group is unknown. Idle workers wake at once."""
        self._postgres_only("clear")
        return await self._store.limits.clear(_check_group(group, "clear"))

    async def block(self, key: str, until: datetime | timedelta | float) -> datetime:
        """Start no job of limit key ``key`` (``"<group>"`` or ``"<group>:<value>"``)
        on any worker until ``until``: an aware datetime, or a ``timedelta`` or
        seconds from now. Running jobs finish. A longer block already in force is
        kept. Returns the end of the block in force (by the database's clock)."""
        self._postgres_only("block")
        checked = check_limit_key(key)
        seconds = _seconds_until(until)
        row = await self._store.limits.block(checked, seconds)
        end: datetime = row["blocked_until"]
        return end

    async def unblock(self, key: str) -> bool:
        """Lift the block on limit key ``key``; False if none was in force. Idle
        workers wake at once."""
        self._postgres_only("unblock")
        return await self._store.limits.unblock(check_limit_key(key))

    async def list(self, keys: bool = False) -> builtins.list[LimitGroupInfo]:
        """Every group that is declared, set, or has limited jobs queued or running,
        by name, with its running and queued counts; with ``keys``, each also with
        its busiest keys (at most ten)."""
        self._postgres_only("list")
        if not isinstance(keys, bool):
            raise SoniqError(INVALID_ARGUMENT, f"limits.list(keys=) takes a bool, got {keys!r}.")
        groups = [_group(row) for row in await self._store.limits.list()]
        if not keys:
            return groups
        with_keys: builtins.list[LimitGroupInfo] = []
        for info in groups:
            rows = await self._store.limits.keys(info.name, KEYS_PER_GROUP)
            found = tuple(
                LimitKeyInfo(
                    key=r["key"],
                    running=r["running"],
                    queued=r["queued"],
                    blocked_until=r["blocked_until"],
                )
                for r in rows
            )
            with_keys.append(replace(info, keys=found))
        return with_keys

    async def in_use(self) -> builtins.list[LimitGroupInfo]:
        """What :meth:`list` gives, without keys; [] on SQLite and memory, which do
        not enforce limits (for ``app.status()``)."""
        if storage_kind(self._settings) != "postgres":
            return []
        return [_group(row) for row in await self._store.limits.list()]

    def _postgres_only(self, call: str) -> None:
        kind = storage_kind(self._settings)
        if kind != "postgres":
            raise BackendUnsupportedError(
                f"app.limits.{call}() needs the PostgreSQL backend; this app keeps its jobs "
                f"in {kind}, where concurrency and rate limits are not enforced (its "
                "workers run limited jobs as unlimited). Use a PostgreSQL database URL.",
                backend=kind,
            )


def _check_group(group: object, call: str) -> str:
    if not isinstance(group, str) or not group or ":" in group or len(group) > _MAX_GROUP:
        raise SoniqError(
            INVALID_ARGUMENT,
            f"limits.{call}() takes a limit group: a task's name, or the group= its "
            f"Concurrency or RateLimit names (non-empty, no ':', at most {_MAX_GROUP} "
            f"characters), got {group!r}. For one key of a group, use block().",
        )
    return group


def _check_rate(rate: object) -> None:
    if not isinstance(rate, RateLimit):
        raise SoniqError(
            INVALID_ARGUMENT,
            "limits.set(rate=) takes RateLimit(limit, per=seconds, burst=1) (or None: no "
            f"rate limit), got {rate!r}.",
        )
    check_rate(rate, "limits.set(rate=)", INVALID_ARGUMENT)


def _seconds_until(until: object) -> float:
    if isinstance(until, bool) or not isinstance(until, (datetime, timedelta, int, float)):
        raise SoniqError(
            INVALID_ARGUMENT,
            "limits.block(until=) takes an aware datetime, a timedelta or seconds from now, "
            f"got {until!r}.",
        )
    end = run_at_to_datetime(until, "limits.block(until=)")
    seconds = (end - datetime.now(timezone.utc)).total_seconds()
    if not (seconds > 0 and math.isfinite(seconds)):
        raise SoniqError(
            INVALID_ARGUMENT,
            f"limits.block(until=) must be in the future, got {end.isoformat()}; to lift "
            "a block, call unblock().",
        )
    return seconds


def _group(row: dict[str, Any]) -> LimitGroupInfo:
    return LimitGroupInfo(
        name=row["name"],
        concurrency=row["concurrency"],
        rate_limit=row["rate_limit"],
        rate_period=row["rate_period"],
        burst=row["burst"],
        source=row["source"],
        declared=row.get("declared"),
        updated_at=row.get("updated_at"),
        running=row.get("running"),
        queued=row.get("queued"),
    )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
