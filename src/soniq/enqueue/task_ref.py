"""Typed stubs for enqueueing a task by name without importing its handler."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar, overload

from pydantic import BaseModel

from soniq.core.limits import Concurrency, RateLimit, TaskLimits, task_limits
from soniq.enqueue.naming import check_task_name
from soniq.errors import INVALID_JOB_OPTION, INVALID_QUEUE, SoniqError

ArgsT = TypeVar("ArgsT", bound=BaseModel)


@dataclass(frozen=True, slots=True, repr=False)
class TaskRef(Generic[ArgsT]):
    """A task's wire name, optional pydantic args model and default queue.

    Build one with :func:`task_ref`; pass it as ``enqueue``'s target. A ref is
    immutable and hashable (usable as a dict key); two refs with the same fields are
    equal.
    """

    name: str
    args_model: type[ArgsT] | None = None
    default_queue: str | None = None
    #: The task's limits as its handler declares them, so that a producer with only
    #: this stub stores the same limit key (see soniq.core.limits).
    concurrency: Concurrency | None = None
    rate_limit: RateLimit | None = None
    #: What the task returns, for ``app.handle(job_id, ref=...)`` to validate its
    #: result against (a pydantic model, or any type pydantic validates).
    result_model: Any = None

    def __repr__(self) -> str:
        # The limits show only when set, so a plain ref reads as it always has.
        parts = [
            f"name={self.name!r}",
            f"args_model={self.args_model!r}",
            f"default_queue={self.default_queue!r}",
        ]
        if self.concurrency is not None:
            parts.append(f"concurrency={self.concurrency!r}")
        if self.rate_limit is not None:
            parts.append(f"rate_limit={self.rate_limit!r}")
        if self.result_model is not None:
            parts.append(f"result_model={self.result_model!r}")
        return f"TaskRef({', '.join(parts)})"

    def limits(self) -> TaskLimits | None:
        """The checked limits this ref carries, or None."""
        fields = None if self.args_model is None else set(self.args_model.model_fields)
        return task_limits(self.name, self.concurrency, self.rate_limit, fields)

    def with_default_queue(self, queue: str | None) -> TaskRef[ArgsT]:
        """A copy of this ref whose jobs go to ``queue`` unless a call names another
        (``None``: the registered queue, else ``"default"``). The ref itself is unchanged."""
        return replace(self, default_queue=_check_default_queue(queue, self.name))


@overload
def task_ref(
    name: str,
    args_model: type[ArgsT],
    default_queue: str | None = None,
    *,
    concurrency: Concurrency | None = None,
    rate_limit: RateLimit | None = None,
    result_model: Any = None,
) -> TaskRef[ArgsT]: ...
@overload
def task_ref(
    name: str,
    args_model: None = None,
    default_queue: str | None = None,
    *,
    concurrency: Concurrency | None = None,
    rate_limit: RateLimit | None = None,
    result_model: Any = None,
) -> TaskRef[Any]: ...
def task_ref(
    name: str,
    args_model: type[BaseModel] | None = None,
    default_queue: str | None = None,
    *,
    concurrency: Concurrency | None = None,
    rate_limit: RateLimit | None = None,
    result_model: Any = None,
) -> TaskRef[Any]:
    """Declare a task by name. The name is checked now, so a typo fails at import.

    ``concurrency=`` and ``rate_limit=`` repeat the handler's limits, so that jobs
    enqueued through this ref carry the same limit key as the handler's own.
    ``result_model=`` is what the task returns: ``app.handle(job_id, ref=this)``
    validates the result against it.
    """
    check_task_name(name)
    if args_model is not None and not (
        isinstance(args_model, type) and issubclass(args_model, BaseModel)
    ):
        raise SoniqError(
            INVALID_JOB_OPTION,
            f"args_model for {name!r} must be a pydantic BaseModel subclass, got {args_model!r}.",
            task_name=name,
        )
    ref = TaskRef(
        name=name,
        args_model=args_model,
        default_queue=_check_default_queue(default_queue, name),
        concurrency=concurrency,
        rate_limit=rate_limit,
        result_model=result_model,
    )
    ref.limits()  # checked now, like the name
    if result_model is not None:
        from soniq.ops.results import result_validator

        result_validator(result_model)  # a type pydantic can validate, checked now
    return ref


def _check_default_queue(queue: object, name: str) -> str | None:
    if queue is not None and (not isinstance(queue, str) or not queue):
        raise SoniqError(
            INVALID_QUEUE,
            f"default_queue for {name!r} must be a non-empty string, got {queue!r}.",
            task_name=name,
        )
    return queue
