"""Typed stubs for enqueueing a task by name without importing its handler."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

from pydantic import BaseModel

from soniq.enqueue.naming import check_task_name
from soniq.errors import INVALID_JOB_OPTION, INVALID_QUEUE, SoniqError

ArgsT = TypeVar("ArgsT", bound=BaseModel)


@dataclass(frozen=True)
class TaskRef(Generic[ArgsT]):
    """A task's wire name, optional pydantic args model and default queue.

    Build one with :func:`task_ref`; pass it as ``enqueue``'s target.
    """

    name: str
    args_model: type[ArgsT] | None = None
    default_queue: str | None = None


@overload
def task_ref(
    name: str, args_model: type[ArgsT], default_queue: str | None = None
) -> TaskRef[ArgsT]: ...
@overload
def task_ref(
    name: str, args_model: None = None, default_queue: str | None = None
) -> TaskRef[Any]: ...
def task_ref(
    name: str, args_model: type[BaseModel] | None = None, default_queue: str | None = None
) -> TaskRef[Any]:
    """Declare a task by name. The name is checked now, so a typo fails at import."""
    check_task_name(name)
    if args_model is not None and not (
        isinstance(args_model, type) and issubclass(args_model, BaseModel)
    ):
        raise SoniqError(
            INVALID_JOB_OPTION,
            f"args_model for {name!r} must be a pydantic BaseModel subclass, got {args_model!r}.",
            task_name=name,
        )
    if default_queue is not None and (not isinstance(default_queue, str) or not default_queue):
        raise SoniqError(
            INVALID_QUEUE,
            f"default_queue for {name!r} must be a non-empty string, got {default_queue!r}.",
            task_name=name,
        )
    return TaskRef(name=name, args_model=args_model, default_queue=default_queue)
