"""Concurrency and rate limits as a task declares them, and the key a job counts against.

``@app.job(concurrency=Concurrency(2, key="{customer_id}"))`` stores, on every job of
the task, the key ``"<group>:<rendered value>"`` (``"<group>"`` without a key
template), where the group is ``group=`` or the task's name. The worker's limited
claim admits a job only while its key is under its group's limits (see migration
0010); nothing here does I/O.
"""

from __future__ import annotations

import hashlib
import math
import string
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from soniq.errors import INVALID_JOB_OPTION, LIMIT_KEY_INVALID, SoniqError

#: A rendered key value longer than this (in UTF-8 bytes) is stored as its hash.
MAX_KEY_VALUE_BYTES = 200
#: The largest limit or burst (PostgreSQL's integer columns hold them).
MAX_COUNT = 2**31 - 1
#: The longest rate period: the claim's timestamps must stay in PostgreSQL's range.
MAX_PERIOD = 366 * 86400.0


@dataclass(frozen=True, slots=True)
class Concurrency:
    """At most ``limit`` jobs with the same key run at once, across every worker.

    ``key`` is a ``str.format`` template over the job's arguments (``"{customer_id}"``);
    None: one key for the whole task (or group). ``group`` shares the limit between
    the tasks that name it; by default each task is its own group.
    """

    limit: int
    key: str | None = None
    group: str | None = None


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``limit + burst - 1`` job starts per key in any window of ``per``
    seconds, across every worker; with ``burst=1``, starts are paced evenly, one every
    ``per / limit`` seconds. Retries and re-claims count as starts.
    """

    limit: int
    per: float | timedelta
    key: str | None = None
    group: str | None = None
    burst: int = 1

    @property
    def period(self) -> float:
        """``per`` in seconds."""
        return self.per.total_seconds() if isinstance(self.per, timedelta) else float(self.per)


class RateLimited(Exception):
    """Raise from a handler when the service it calls says "too many requests".

    The job goes back to the queue without spending an attempt, and its limit key
    (if it has one) is held back fleet-wide for ``retry_after`` seconds.
    """

    def __init__(self, retry_after: float | timedelta = 1.0, reason: str | None = None) -> None:
        if isinstance(retry_after, timedelta):
            retry_after = retry_after.total_seconds()
        if (
            isinstance(retry_after, bool)
            or not isinstance(retry_after, (int, float))
            or not math.isfinite(retry_after)
        ):
            raise SoniqError(
                INVALID_JOB_OPTION,
                f"RateLimited(retry_after=) takes seconds or a timedelta, got {retry_after!r}.",
            )
        self.retry_after = max(0.0, float(retry_after))
        self.reason = reason
        super().__init__(f"rate limited: retry after {self.retry_after:g}s")


@dataclass(frozen=True, slots=True)
class TaskLimits:
    """A task's limits, checked: the group, the key template and what to store."""

    group: str
    template: str | None
    #: The argument names the template reads.
    fields: tuple[str, ...]
    concurrency: int | None
    rate: RateLimit | None

    def declared(self) -> dict[str, Any]:
        """The group's row as the code declares it (see ``store.limits.declare``)."""
        rate = self.rate
        return {
            "name": self.group,
            "concurrency": self.concurrency,
            "rate_limit": None if rate is None else rate.limit,
            "rate_period": None if rate is None else rate.period,
            "burst": 1 if rate is None else rate.burst,
        }

    def key_for(self, args: Mapping[str, Any], defaults: Mapping[str, Any], task: str) -> str:
        """The key a job with ``args`` counts against (``defaults``: the handler's)."""
        if self.template is None:
            return self.group
        values = {}
        for name in self.fields:
            if name in args:
                values[name] = args[name]
            elif name in defaults:
                values[name] = defaults[name]
            else:
                raise SoniqError(
                    LIMIT_KEY_INVALID,
                    f"The limit key of {task!r} is {self.template!r}, but the job has no "
                    f"argument {name!r}. Pass it, or pass limit_key= to enqueue().",
                    task_name=task,
                )
        try:
            rendered = self.template.format(**values)
        except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
            raise SoniqError(
                LIMIT_KEY_INVALID,
                f"The limit key {self.template!r} of {task!r} cannot be rendered from "
                f"these arguments ({type(exc).__name__}: {exc}). Fix the template or pass "
                "limit_key= to enqueue().",
                task_name=task,
            ) from None
        return f"{self.group}:{bounded(rendered)}"


def bounded(value: str) -> str:
    """``value``, or its hash when longer than :data:`MAX_KEY_VALUE_BYTES`."""
    if len(value.encode()) <= MAX_KEY_VALUE_BYTES:
        return value
    return "sha256-" + hashlib.sha256(value.encode()).hexdigest()


def check_limit_key(value: object) -> str:
    """An explicit ``limit_key=``: ``"<group>"`` or ``"<group>:<value>"``."""
    if not isinstance(value, str) or not value or value.startswith(":") or len(value) > 500:
        raise SoniqError(
            LIMIT_KEY_INVALID,
            f"limit_key must be '<group>' or '<group>:<value>' (a non-empty group, at most "
            f"500 characters), got {value!r}.",
        )
    return value


def task_limits(
    task: str,
    concurrency: object,
    rate_limit: object,
    params: Collection[str] | None,
) -> TaskLimits | None:
    """Check a task's ``concurrency=`` and ``rate_limit=``; None when it has neither.

    ``params`` are the handler's argument names (None: not known, as for a TaskRef
    without an args model; any name goes).
    """
    where = f"limits of {task!r}"
    if concurrency is None and rate_limit is None:
        return None
    if concurrency is not None and not isinstance(concurrency, Concurrency):
        raise SoniqError(
            INVALID_JOB_OPTION,
            f"{where}: concurrency= takes Concurrency(limit, key=..., group=...), "
            f"got {concurrency!r}.",
        )
    if rate_limit is not None and not isinstance(rate_limit, RateLimit):
        raise SoniqError(
            INVALID_JOB_OPTION,
            f"{where}: rate_limit= takes RateLimit(limit, per=seconds, key=..., group=..., "
            f"burst=1), got {rate_limit!r}.",
        )
    if concurrency is not None:
        check_count(concurrency.limit, "Concurrency(limit)", where, least=0)
    if rate_limit is not None:
        check_rate(rate_limit, where)
    both = [d for d in (concurrency, rate_limit) if d is not None]
    keys = {d.key for d in both}
    groups = {d.group for d in both}
    if len(keys) > 1 or len(groups) > 1:
        raise SoniqError(
            INVALID_JOB_OPTION,
            f"{where}: concurrency= and rate_limit= apply to one key, so they need the "
            f"same key= and group=; got keys {sorted(map(str, keys))} and groups "
            f"{sorted(map(str, groups))}.",
        )
    group = groups.pop() or task
    if ":" in group or not group:
        raise SoniqError(
            INVALID_JOB_OPTION,
            f"{where}: the limit group {group!r} may not be empty or contain ':'. "
            "Pass group= with another name.",
        )
    template = keys.pop()
    fields: tuple[str, ...] = ()
    if template is not None:
        fields = _template_fields(template, where)
        unknown = [f for f in fields if params is not None and f not in params]
        if unknown:
            raise SoniqError(
                INVALID_JOB_OPTION,
                f"{where}: the key template {template!r} reads {unknown[0]!r}, which is "
                f"not an argument of the handler ({', '.join(sorted(params or ())) or 'none'}).",
            )
    return TaskLimits(
        group=group,
        template=template,
        fields=fields,
        concurrency=None if concurrency is None else concurrency.limit,
        rate=rate_limit,
    )


def check_count(
    value: object, label: str, where: str, *, least: int, code: str = INVALID_JOB_OPTION
) -> None:
    """A limit or burst the claim can store: an int from ``least`` to MAX_COUNT, else
    SoniqError ``code``, its message starting with ``where``."""
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= MAX_COUNT:
        raise SoniqError(
            code, f"{where}: {label} must be an int from {least} to {MAX_COUNT}, got {value!r}."
        )


def check_rate(rate: RateLimit, where: str, code: str = INVALID_JOB_OPTION) -> None:
    """A rate the claim can compute with: a limit and a burst of 1 or more, and a
    period (and the time the burst takes to earn back) of at most MAX_PERIOD."""
    check_count(rate.limit, "RateLimit(limit)", where, least=1, code=code)
    check_count(rate.burst, "RateLimit(burst=)", where, least=1, code=code)
    per = rate.per
    seconds = per.total_seconds() if isinstance(per, timedelta) else per
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not (0 < seconds <= MAX_PERIOD)
    ):
        raise SoniqError(
            code,
            f"{where}: RateLimit(per=) takes a positive number of seconds (at most 366 "
            f"days) or a timedelta, got {per!r}.",
        )
    if (rate.burst - 1) * seconds / rate.limit > MAX_PERIOD:
        raise SoniqError(
            code,
            f"{where}: RateLimit(burst={rate.burst}) would take more than 366 days to earn "
            "back at this rate; use a smaller burst or a shorter per=.",
        )


def _template_fields(template: object, where: str) -> tuple[str, ...]:
    """The argument names a key template reads; it must read at least one."""
    if not isinstance(template, str) or not template:
        raise SoniqError(
            INVALID_JOB_OPTION,
            f"{where}: key= is a str.format template such as '{{customer_id}}', got {template!r}.",
        )
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise SoniqError(
            INVALID_JOB_OPTION, f"{where}: key template {template!r} is malformed: {exc}."
        ) from None
    names: list[str] = []
    for _, field, _, _ in parsed:
        if field is None:
            continue
        base = field.split(".", 1)[0].split("[", 1)[0]
        if not base.isidentifier():
            raise SoniqError(
                INVALID_JOB_OPTION,
                f"{where}: key template {template!r} must name arguments, as in "
                "'{customer_id}' (positional fields like '{}' or '{0}' are not allowed).",
            )
        if base not in names:
            names.append(base)
    if not names:
        raise SoniqError(
            INVALID_JOB_OPTION,
            f"{where}: key template {template!r} reads no argument, so every job would "
            "share one key. Leave key=None for that.",
        )
    return tuple(names)
