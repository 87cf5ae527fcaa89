"""Registered handlers: what ``@app.job()`` records and how it is looked up."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeGuard, get_type_hints

from pydantic import BaseModel

from soniq.core.limits import TaskLimits, task_limits
from soniq.enqueue.naming import check_task_name, derive_task_name
from soniq.errors import (
    DUPLICATE_TASK_NAME,
    INVALID_JOB_OPTION,
    INVALID_PRIORITY,
    INVALID_QUEUE,
    SoniqError,
)
from soniq.types import JobContext

RetryDelay = float | Sequence[float]


@dataclass(frozen=True)
class JobSpec:
    """Everything known about one registered handler."""

    name: str
    func: Callable[..., Any]
    retries: int
    priority: int
    queue: str | None  # None: not chosen at registration (a TaskRef's default may apply)
    unique: bool
    retry_delay: float | tuple[float, ...]
    retry_backoff: bool
    retry_max_delay: float | None
    timeout: float | None
    args_model: type[BaseModel] | None
    is_async: bool
    context_param: str | None
    signature: inspect.Signature
    #: Keyword arguments the handler takes (its JobContext parameter excluded), the
    #: ones it needs, and whether it takes **kwargs: enqueue checks args against these.
    arg_names: frozenset[str]
    required_args: frozenset[str]
    takes_any: bool
    #: Randomise each retry delay within its upper half (``@app.job(retry_jitter=True)``).
    retry_jitter: bool = False
    #: Concurrency and rate limits (``@app.job(concurrency=..., rate_limit=...)``).
    limits: TaskLimits | None = None
    #: ``@app.job(transactional=...)``: False; True (Soniq opens a transaction on a
    #: handler pool and commits "done" with the handler's writes); or "django" (the
    #: handler runs in ``transaction.atomic(using=...)``, on Django's ``using`` alias).
    transactional: bool | str = False
    using: str | None = None

    @cached_property
    def defaults(self) -> dict[str, Any]:
        """The handler's argument defaults, by name (what a limit key falls back on);
        worked out once, not for every job enqueued."""
        return {
            name: p.default
            for name, p in self.signature.parameters.items()
            if p.default is not p.empty and name in self.arg_names
        }

    @property
    def max_attempts(self) -> int:
        """Total runs allowed: the first plus ``retries``."""
        return self.retries + 1


#: Task names that start with this are Soniq's own jobs (the webhook delivery job,
#: ``soniq.webhooks.deliver``), which every worker serves.
BUILTIN_PREFIX = "soniq."


def is_builtin_task(name: str) -> bool:
    """Whether ``name`` is one of Soniq's own jobs rather than the application's."""
    return name.startswith(BUILTIN_PREFIX)


class JobRegistry:
    """Maps task names (and handler functions) to their :class:`JobSpec`."""

    def __init__(self) -> None:
        self._by_name: dict[str, JobSpec] = {}
        self._by_func: dict[Callable[..., Any], JobSpec] = {}
        #: Bumped on every change, so cached lookups know when to start over.
        self.version = 0

    def add(self, spec: JobSpec) -> None:
        """Register ``spec``; re-registering the same function (a reload) replaces it."""
        old = self._by_name.get(spec.name)
        if old is not None and _identity(old.func) != _identity(spec.func):
            raise SoniqError(
                DUPLICATE_TASK_NAME,
                f"Task name {spec.name!r} is already registered to "
                f"{_identity(old.func)}; pick another name= for {_identity(spec.func)}.",
                task_name=spec.name,
            )
        if spec.limits is not None:
            self._check_group(spec)
        if old is not None:
            self._by_func.pop(old.func, None)
        self._by_name[spec.name] = spec
        self._by_func[spec.func] = spec
        self.version += 1

    def _check_group(self, spec: JobSpec) -> None:
        """Tasks that share a limit group must declare the same limits for it."""
        assert spec.limits is not None
        mine = spec.limits.declared()
        for other in self._by_name.values():
            if other.name == spec.name or other.limits is None:
                continue
            if other.limits.group == spec.limits.group and other.limits.declared() != mine:
                raise SoniqError(
                    INVALID_JOB_OPTION,
                    f"Tasks {other.name!r} and {spec.name!r} share the limit group "
                    f"{spec.limits.group!r} but declare different limits for it; declare "
                    "the same Concurrency/RateLimit on both, or give them different group=.",
                    task_name=spec.name,
                )

    def limit_groups(self) -> list[dict[str, Any]]:
        """Each limit group the registered tasks declare, as ``store.limits.declare``
        takes them."""
        groups = {s.limits.group: s.limits.declared() for s in self._by_name.values() if s.limits}
        return [groups[name] for name in sorted(groups)]

    def transactional(self) -> list[str]:
        """The names of the tasks declared ``transactional=``, sorted."""
        return sorted(name for name, spec in self._by_name.items() if spec.transactional)

    def get(self, name: str) -> JobSpec | None:
        """The spec registered under ``name``, or None."""
        return self._by_name.get(name)

    def for_function(self, func: Callable[..., Any]) -> JobSpec | None:
        """The spec a handler function was registered with, or None."""
        try:
            return self._by_func.get(func)
        except TypeError:  # unhashable callable
            return None

    def get_job(self, name: str) -> dict[str, Any] | None:
        """A registration as a plain dict (``max_retries``, ``queue``, ...), or None."""
        spec = self._by_name.get(name)
        if spec is None:
            return None
        return {
            "name": spec.name,
            "func": spec.func,
            "max_retries": spec.retries,
            "max_attempts": spec.max_attempts,
            "priority": spec.priority,
            "queue": spec.queue,
            "unique": spec.unique,
            "timeout": spec.timeout,
            "args_model": spec.args_model,
        }

    def names(self) -> list[str]:
        """All registered task names, sorted."""
        return sorted(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __len__(self) -> int:
        return len(self._by_name)


def build_spec(
    func: Callable[..., Any],
    *,
    name: str | None,
    retries: int,
    priority: int,
    queue: str | None,
    unique: bool,
    retry_delay: RetryDelay,
    retry_backoff: bool,
    retry_max_delay: float | None,
    timeout: float | None,
    args_model: type[BaseModel] | None,
    name_pattern: str,
    retry_jitter: bool = False,
    concurrency: object = None,
    rate_limit: object = None,
    transactional: object = False,
    using: object = None,
) -> JobSpec:
    """Check every ``@app.job()`` option and build the spec, or raise SoniqError."""
    if not callable(func):
        raise SoniqError(INVALID_JOB_OPTION, f"@app.job() decorates a function, got {func!r}.")
    task_name = derive_task_name(func) if name is None else check_task_name(name, name_pattern)
    where = f"@app.job() on {task_name!r}"
    if not _is_int(retries) or retries < 0:
        raise SoniqError(
            INVALID_JOB_OPTION, f"{where}: retries must be an int >= 0, got {retries!r}."
        )
    check_priority(priority, where)
    if queue is not None:
        check_queue(queue, where)
    delay = _check_delay(retry_delay, where)
    if not isinstance(retry_jitter, bool):
        raise SoniqError(
            INVALID_JOB_OPTION,
            f"{where}: retry_jitter must be True or False, got {retry_jitter!r}.",
        )
    for label, value in (("retry_max_delay", retry_max_delay), ("timeout", timeout)):
        if value is not None and (not _is_number(value) or not value > 0):
            raise SoniqError(
                INVALID_JOB_OPTION,
                f"{where}: {label} must be a positive number of seconds or None, got {value!r}.",
            )
    if args_model is not None and not (
        isinstance(args_model, type) and issubclass(args_model, BaseModel)
    ):
        raise SoniqError(
            INVALID_JOB_OPTION,
            f"{where}: validate= must be a pydantic BaseModel subclass, got {args_model!r}.",
        )
    signature = inspect.signature(func)
    context_param = _context_param(func, signature)
    params = [p for n, p in signature.parameters.items() if n != context_param]
    fillable = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    stuck = [p.name for p in params if p.kind is p.POSITIONAL_ONLY and p.default is p.empty]
    if stuck:
        raise SoniqError(
            INVALID_JOB_OPTION,
            f"{where}: handlers are called with keyword arguments, so positional-only "
            f"parameter {stuck[0]!r} could never be filled. Drop the '/' marker.",
        )
    arg_names = frozenset(p.name for p in fillable)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params)
    limits = task_limits(task_name, concurrency, rate_limit, None if takes_any else arg_names)
    _check_transactional(where, transactional, using, func, context_param)
    return JobSpec(
        name=task_name,
        func=func,
        retries=retries,
        priority=priority,
        queue=queue,
        unique=bool(unique),
        retry_delay=delay,
        retry_backoff=bool(retry_backoff),
        retry_max_delay=None if retry_max_delay is None else float(retry_max_delay),
        timeout=None if timeout is None else float(timeout),
        args_model=args_model,
        is_async=inspect.iscoroutinefunction(func),
        context_param=context_param,
        signature=signature,
        arg_names=arg_names,
        required_args=frozenset(p.name for p in fillable if p.default is p.empty),
        takes_any=takes_any,
        retry_jitter=retry_jitter,
        limits=limits,
        transactional=transactional,  # type: ignore[arg-type]  # checked above
        using=using,  # type: ignore[arg-type]
    )


def _check_transactional(
    where: str,
    transactional: object,
    using: object,
    func: Callable[..., Any],
    context_param: str | None,
) -> None:
    if not (isinstance(transactional, bool) or transactional == "django"):
        raise SoniqError(
            INVALID_JOB_OPTION,
            f"{where}: transactional= takes False, True or 'django', got {transactional!r}.",
        )
    if using is not None and (transactional != "django" or not isinstance(using, str)):
        raise SoniqError(
            INVALID_JOB_OPTION,
            f"{where}: using= names the Django database alias of a transactional='django' "
            f"job (a string), got using={using!r} with transactional={transactional!r}.",
        )
    if transactional == "django" and inspect.iscoroutinefunction(func):
        raise SoniqError(
            INVALID_JOB_OPTION,
            f"{where}: transactional='django' runs the handler in Django's "
            "transaction.atomic(), which is blocking: make the handler a plain def.",
        )
    if transactional is True and context_param is None:
        raise SoniqError(
            INVALID_JOB_OPTION,
            f"{where}: a transactional=True handler writes through ctx.connection, so it "
            "needs a parameter annotated JobContext (e.g. `ctx: JobContext`).",
        )


def check_priority(priority: object, where: str) -> int:
    """Return ``priority`` if it is an int in 1..1000, else raise SoniqError."""
    if not _is_int(priority) or not 1 <= priority <= 1000:
        raise SoniqError(
            INVALID_PRIORITY,
            f"{where}: priority must be an int from 1 (most urgent) to 1000, got {priority!r}.",
            priority=priority,
        )
    return priority


def check_queue(queue: object, where: str) -> str:
    """Return ``queue`` if it is a usable queue name, else raise SoniqError."""
    if not isinstance(queue, str) or not queue.strip() or len(queue) > 200:
        raise SoniqError(
            INVALID_QUEUE,
            f"{where}: queue must be a non-empty string of at most 200 characters, got {queue!r}.",
            queue=queue,
        )
    return queue


def _check_delay(value: object, where: str) -> float | tuple[float, ...]:
    if _is_number(value) and value >= 0:
        return float(value)
    if isinstance(value, (list, tuple)) and value and all(_is_number(v) and v >= 0 for v in value):
        return tuple(float(v) for v in value)
    raise SoniqError(
        INVALID_JOB_OPTION,
        f"{where}: retry_delay must be seconds >= 0 or a non-empty list of them "
        f"(e.g. [1, 5, 30]), got {value!r}.",
    )


def _context_param(func: Callable[..., Any], signature: inspect.Signature) -> str | None:
    try:
        hints = get_type_hints(func)
    except Exception:  # unresolvable forward references: fall back to raw annotations
        hints = {n: p.annotation for n, p in signature.parameters.items()}
    for pname in signature.parameters:
        hint = hints.get(pname)
        if hint is JobContext or hint == "JobContext":
            return pname
    return None


def _identity(func: Callable[..., Any]) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
