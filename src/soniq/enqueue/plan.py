"""Turning an ``enqueue(...)`` call into a checked job row, before any I/O.

Everything that can be wrong with a call is found here, so a bad call never writes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import BaseModel, ValidationError

from soniq.core.limits import TaskLimits, check_limit_key
from soniq.core.registry import JobRegistry, JobSpec, check_priority, check_queue
from soniq.enqueue.ids import new_job_id
from soniq.enqueue.naming import check_wire_name, derive_task_name
from soniq.enqueue.producer import process_producer_id
from soniq.enqueue.task_ref import TaskRef
from soniq.errors import (
    ARGS_CONFLICT,
    INVALID_ARGUMENT,
    INVALID_DEDUP_KEY,
    INVALID_SCHEDULE,
    INVALID_TARGET,
    NAIVE_DATETIME,
    TASK_ARGS_INVALID,
    UNKNOWN_TASK_NAME,
    ArgsNotSerializableError,
    SoniqError,
    SoniqTypeError,
    SoniqValueError,
)
from soniq.settings import SoniqSettings

logger = logging.getLogger("soniq.enqueue")

# Strict JSON (no NaN or infinity, which jsonb rejects), compact, built once.
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"), ensure_ascii=False)

#: What ``enqueue`` accepts as its first argument.
Target = Callable[..., Any] | str | TaskRef[Any]


@dataclass(slots=True)
class JobRow:
    """One checked job, ready to insert."""

    id: str
    job_name: str
    args_json: str
    queue: str
    priority: int
    max_attempts: int
    dedup_key: str | None
    scheduled_at: datetime | None
    #: Propagation headers as JSON text (a trace context), or None; see soniq.observability.tracing.
    headers: str | None = None
    #: Who enqueued it (SONIQ_PRODUCER_ID); see soniq.enqueue.producer.
    producer_id: str | None = None
    #: The concurrency/rate limit key it counts against (soniq.core.limits), or None.
    limit_key: str | None = None
    #: Someone will wait for it (``enqueue(watch=True)``): its events are sent.
    watched: bool = False

    def params(self) -> dict[str, Any]:
        """The named parameters of the ``insert_job`` query."""
        return {
            "id": self.id,
            "job_name": self.job_name,
            "args": self.args_json,
            "queue": self.queue,
            "priority": self.priority,
            "max_attempts": self.max_attempts,
            "dedup_key": self.dedup_key,
            "scheduled_at": self.scheduled_at,
            "headers": self.headers,
            "producer_id": self.producer_id,
            "limit_key": self.limit_key,
            "watched": self.watched,
        }


class UnknownNameWarner:
    """Warns about an unregistered task name at most once per name per interval."""

    def __init__(self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self._interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}

    def warn(self, name: str) -> bool:
        """Log the warning unless it was logged recently; return whether it was."""
        now = self._clock()
        last = self._last.get(name)
        if last is not None and now - last < self._interval:
            return False
        self._last[name] = now
        logger.warning(
            "Enqueueing unregistered task %r (SONIQ_ENQUEUE_VALIDATION=warn); a worker "
            "must register it or the job will be dead-lettered.",
            name,
            extra={"job_name": name},
        )
        return True


@dataclass(frozen=True)
class _Resolved:
    name: str
    spec: JobSpec | None
    model: type[BaseModel] | None
    default_queue: str | None


def resolve_target(
    target: object,
    *,
    has_args: bool,
    has_kwargs: bool,
    registry: JobRegistry,
    settings: SoniqSettings,
    warner: UnknownNameWarner,
    stored_name: bool = False,
) -> _Resolved:
    """Work out the task name, local spec and args model for one of the three shapes.

    A task name (a string or a TaskRef's) that no local registration serves must match
    SONIQ_TASK_NAME_PATTERN, whatever the validation mode, unless ``stored_name``: the
    name comes from a row Soniq wrote (a schedule), checked when it was written.
    """
    if isinstance(target, TaskRef):
        _no_kwargs(has_kwargs, "a TaskRef")
        spec = _served(registry, target.name)
        if spec is None and not stored_name:
            check_wire_name(target.name, settings.task_name_pattern)
        # The TaskRef is itself the declaration of a remote task, so strict mode
        # does not ask for a local registration.
        model = target.args_model or (spec.args_model if spec else None)
        return _Resolved(target.name, spec, model, target.default_queue)
    if isinstance(target, str):
        _no_kwargs(has_kwargs, "a task name")
        spec = registry.get(target)
        if spec is None:
            if not stored_name:
                check_wire_name(target, settings.task_name_pattern)
            _unknown(target, settings, warner)
        return _Resolved(target, spec, spec.args_model if spec else None, None)
    if callable(target):
        if has_args:
            raise SoniqTypeError(
                ARGS_CONFLICT,
                "args= is for task-name and TaskRef targets. For a function, pass its "
                "arguments as keywords: enqueue(func, order_id=7).",
            )
        spec = registry.for_function(target)
        if spec is None:
            name = getattr(target, "__soniq_task_name__", None) or derive_task_name(target)
            spec = registry.get(name)
            if spec is None:
                _unknown(name, settings, warner, func=target)
            return _Resolved(name, spec, spec.args_model if spec else None, None)
        return _Resolved(spec.name, spec, spec.args_model, None)
    raise SoniqTypeError(
        INVALID_TARGET,
        f"enqueue() takes a @app.job() function, a task-name string or a TaskRef, "
        f"got {type(target).__name__}.",
    )


def _served(registry: JobRegistry, name: object) -> JobSpec | None:
    """The local registration of ``name``, if it is a string that has one."""
    return registry.get(name) if isinstance(name, str) else None


def _no_kwargs(has_kwargs: bool, what: str) -> None:
    if has_kwargs:
        raise SoniqTypeError(
            ARGS_CONFLICT,
            f"When the target is {what}, pass the job's arguments as args={{...}}, "
            "not as keyword arguments (they would collide with enqueue options).",
        )


def _unknown(
    name: str,
    settings: SoniqSettings,
    warner: UnknownNameWarner,
    func: Callable[..., Any] | None = None,
) -> None:
    mode = settings.enqueue_validation
    if mode == "strict":
        hint = (
            f"Decorate {func.__qualname__} with @app.job() on this app"
            if func is not None
            else "Register it with @app.job(name=...), enqueue through a task_ref(), or set "
            "SONIQ_ENQUEUE_VALIDATION=warn|none on a producer with no local handlers"
        )
        raise SoniqError(
            UNKNOWN_TASK_NAME,
            f"No job named {name!r} is registered on this app. {hint}.",
            task_name=name,
        )
    if mode == "warn":
        warner.warn(name)


def normalise_args(args: object, name: str) -> dict[str, Any]:
    """Accept a dict or a pydantic model as ``args=``; return a plain dict."""
    if args is None:
        return {}
    if isinstance(args, BaseModel):
        return args.model_dump(mode="json")
    if isinstance(args, Mapping):
        bad = [k for k in args if not isinstance(k, str)]
        if bad:
            raise SoniqTypeError(
                TASK_ARGS_INVALID,
                f"Arguments for {name!r} must have string keys, got {bad[0]!r}.",
                task_name=name,
            )
        return dict(args)
    raise SoniqTypeError(
        TASK_ARGS_INVALID,
        f"args= for {name!r} must be a dict (or a pydantic model), got {type(args).__name__}.",
        task_name=name,
    )


def validate_args(resolved: _Resolved, args: dict[str, Any]) -> None:
    """Check ``args`` against the args model, else against the local handler's signature."""
    if resolved.model is not None:
        try:
            resolved.model.model_validate(args)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            raise SoniqError(
                TASK_ARGS_INVALID,
                f"Arguments for {resolved.name!r} do not match "
                f"{resolved.model.__name__}: {_summarise(exc)}. Fix the arguments.",
                task_name=resolved.name,
                errors=errors,
                field=(_field(errors[0]) or None) if errors else None,
            ) from None
        except Exception as exc:  # a validator raising TypeError etc. is not wrapped
            raise SoniqError(
                TASK_ARGS_INVALID,
                f"Arguments for {resolved.name!r} do not match {resolved.model.__name__}: "
                f"its validation raised {type(exc).__name__}: {exc}. Fix the arguments.",
                task_name=resolved.name,
            ) from exc
        return
    spec = resolved.spec
    if spec is None:
        return
    missing = spec.required_args.difference(args)
    extra = () if spec.takes_any else args.keys() - spec.arg_names
    if missing or extra:
        problems = []
        if missing:
            problems.append(f"missing {', '.join(repr(a) for a in sorted(missing))}")
        if extra:
            problems.append(f"unexpected {', '.join(repr(a) for a in sorted(extra))}")
        raise SoniqError(
            TASK_ARGS_INVALID,
            f"Arguments for {resolved.name!r} do not fit {spec.func.__qualname__}"
            f"{spec.signature}: {'; '.join(problems)}.",
            task_name=resolved.name,
        )


def _summarise(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:3]:
        parts.append(f"{_field(err) or '(root)'}: {err['msg']}")
    return "; ".join(parts)


def _field(error: Mapping[str, Any]) -> str:
    """The dotted path of the value a pydantic error is about ("" for the whole)."""
    return ".".join(str(p) for p in error["loc"])


def check_watch(watch: object) -> bool:
    """``enqueue(watch=)``: True or False (anything else is refused, nothing written)."""
    if isinstance(watch, bool):
        return watch
    raise SoniqTypeError(
        INVALID_ARGUMENT, f"watch= must be True or False, got {watch!r}.", option="watch"
    )


def check_args_list(args_list: object, name: object) -> list[Any]:
    """``enqueue_many``'s items as a list; a dict, a string or a non-iterable is refused."""
    if isinstance(args_list, Iterable) and not isinstance(
        args_list, (str, bytes, Mapping, BaseModel)
    ):
        return list(args_list)
    raise SoniqTypeError(
        TASK_ARGS_INVALID,
        f"enqueue_many() for {name!r} takes a list (or any iterable) of argument dicts, "
        f"one per job, got {type(args_list).__name__}. For one job, call enqueue().",
    )


def plan_rows(
    plan: JobPlan, items: list[Any], job_ids: list[str], limit_key: object = None
) -> list[JobRow]:
    """Check every item of an ``enqueue_many`` call and build its rows, all or none.

    The error about a bad item says which one: ``details["index"]`` and the message
    (and ``details["field"]`` when an args model refused a value).
    """
    rows: list[JobRow] = []
    producer = plan.producer()
    try:
        for item, job_id in zip(items, job_ids, strict=True):
            rows.append(plan.row(item, job_id=job_id, producer_id=producer, limit_key=limit_key))
    except SoniqError as exc:
        index = len(rows)
        field = exc.details.get("field")
        where = f"args_list[{index}]" + (f", field {field!r}" if field else "")
        exc.locate(where, index=index)
        raise
    return rows


def dump_args(args: dict[str, Any], name: str) -> str:
    """Serialise ``args`` as strict JSON, naming the first value that cannot be."""
    try:
        return _ENCODER.encode(args)
    except (TypeError, ValueError):
        pass
    culprit = "?"
    for key, value in args.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            culprit = f"{key}={value!r} ({type(value).__name__})"
            break
    raise ArgsNotSerializableError(
        f"Arguments for {name!r} must be JSON-serialisable; {culprit} is not. Convert it "
        "first (e.g. str(uuid), dt.isoformat(), float(decimal)); NaN and infinity are "
        "not allowed either.",
        task_name=name,
    )


def check_scheduled_at(value: object) -> datetime | None:
    """Return an aware UTC datetime (or None): an aware datetime, or a ``timedelta`` or
    number of seconds from now; reject naive datetimes and anything else."""
    if value is None:
        return None
    if isinstance(value, (int, float, timedelta)) and not isinstance(value, bool):
        return run_at_to_datetime(value, "scheduled_at")
    if not isinstance(value, datetime):
        raise SoniqError(
            INVALID_SCHEDULE,
            "scheduled_at must be a timezone-aware datetime, a timedelta or seconds from "
            f"now, got {type(value).__name__}.",
        )
    if value.tzinfo is None or value.utcoffset() is None:
        raise SoniqValueError(
            NAIVE_DATETIME,
            f"scheduled_at {value.isoformat()} has no time zone. Pass an aware datetime, "
            "e.g. datetime.now(timezone.utc) + timedelta(minutes=5).",
        )
    return value.astimezone(timezone.utc)


def run_at_to_datetime(run_at: object, label: str = "run_at") -> datetime:
    """``schedule()``'s ``run_at`` (``label``): an aware datetime, or a ``timedelta`` or
    seconds from now."""
    if isinstance(run_at, (int, float)) and not isinstance(run_at, bool):
        try:
            if not run_at >= 0:
                raise OverflowError
            return datetime.now(timezone.utc) + timedelta(seconds=float(run_at))
        except OverflowError:
            raise SoniqError(
                INVALID_SCHEDULE,
                f"{label} in seconds must be a number >= 0 that lands before year 10000, "
                f"got {run_at!r}.",
            ) from None
    if isinstance(run_at, timedelta):
        try:
            return datetime.now(timezone.utc) + run_at
        except OverflowError:
            raise SoniqError(INVALID_SCHEDULE, f"{label} {run_at!r} is out of range.") from None
    checked = check_scheduled_at(run_at)
    if checked is None:
        raise SoniqError(INVALID_SCHEDULE, f"{label} is required: a datetime or seconds from now.")
    return checked


def dedup_key_for(args: dict[str, Any], unique: bool, key: object) -> str | None:
    """The row's dedup key: the caller's ``dedup_key``, else an args hash when unique."""
    if key is not None:
        if not isinstance(key, str) or not key or len(key) > 1000:
            raise SoniqError(
                INVALID_DEDUP_KEY,
                f"dedup_key must be a non-empty string of at most 1000 characters, got {key!r}.",
            )
        return key
    if not unique:
        return None
    canonical = json.dumps(args, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "args:" + hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class JobPlan:
    """What every row of one enqueue call shares: name, options and how to check args."""

    resolved: _Resolved
    by_keywords: bool
    queue: str
    priority: int
    max_attempts: int
    unique: bool
    scheduled_at: datetime | None
    #: SONIQ_PRODUCER_ID, or None for this process's default (looked up per call: a
    #: cached plan outlives a fork, the default must not).
    producer_id: str | None = None
    #: The task's limits (its handler's, else its TaskRef's), or None.
    limits: TaskLimits | None = None

    def producer(self) -> str:
        """The ``producer_id`` this call's rows get."""
        return self.producer_id or process_producer_id()

    def row(
        self,
        call_args: object,
        dedup_key: object = None,
        job_id: str = "",
        producer_id: str | None = None,
        limit_key: object = None,
    ) -> JobRow:
        """Check one set of arguments and build its row (``producer_id``: the call's,
        from :meth:`producer`, when the caller builds many rows; ``limit_key``: the
        call's override of the key the task's limits render)."""
        name = self.resolved.name
        plain = normalise_args(call_args, name)
        validate_args(self.resolved, plain)
        key: str | None = None
        if limit_key is not None:
            key = check_limit_key(limit_key)
        elif self.limits is not None:
            spec = self.resolved.spec
            key = self.limits.key_for(plain, spec.defaults if spec else {}, name)
        return JobRow(
            id=job_id or new_job_id(),
            job_name=name,
            args_json=dump_args(plain, name),
            queue=self.queue,
            priority=self.priority,
            max_attempts=self.max_attempts,
            dedup_key=dedup_key_for(plain, self.unique, dedup_key),
            scheduled_at=self.scheduled_at,
            producer_id=producer_id or self.producer_id or process_producer_id(),
            limit_key=key,
        )


def plan_job(
    target: object,
    *,
    has_args: bool,
    has_kwargs: bool,
    priority: object,
    queue: object,
    scheduled_at: object,
    unique: bool | None,
    registry: JobRegistry,
    settings: SoniqSettings,
    warner: UnknownNameWarner,
    stored_name: bool = False,
) -> JobPlan:
    """Resolve the target and check the options shared by all rows of a call."""
    resolved = resolve_target(
        target,
        has_args=has_args,
        has_kwargs=has_kwargs,
        registry=registry,
        settings=settings,
        warner=warner,
        stored_name=stored_name,
    )
    spec = resolved.spec
    where = f"enqueue({resolved.name!r})"
    if priority is None:
        priority = spec.priority if spec else settings.priority
    if queue is None:
        queue = (spec.queue if spec else None) or resolved.default_queue or "default"
    return JobPlan(
        resolved=resolved,
        by_keywords=not isinstance(target, (str, TaskRef)),
        queue=check_queue(queue, where),
        priority=check_priority(priority, where),
        max_attempts=spec.max_attempts if spec else settings.max_retries + 1,
        unique=(spec.unique if spec else False) if unique is None else bool(unique),
        scheduled_at=check_scheduled_at(scheduled_at),
        producer_id=settings.producer_id,
        limits=_limits_of(resolved, target),
    )


def _limits_of(resolved: _Resolved, target: object) -> TaskLimits | None:
    """The limits that apply to a call's jobs: the local handler's, else the TaskRef's."""
    if resolved.spec is not None and resolved.spec.limits is not None:
        return resolved.spec.limits
    return target.limits() if isinstance(target, TaskRef) else None
