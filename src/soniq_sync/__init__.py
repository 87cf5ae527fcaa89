"""Soniq for blocking code: Django views, Flask routes, management commands, scripts.

``soniq_sync.Soniq`` has the same constructor and methods as ``soniq.Soniq``, without
``await``, and needs no event loop anywhere in the process. Its methods are generated
from the async app's source (``tools/async_to_sync.py``), so both behave alike. One
connection pool per app is shared by all threads.

The module-level ``enqueue``, ``schedule`` and ``enqueue_many`` use a default app,
configured from the ``SONIQ_*`` environment or by ``configure(...)``; ``job()``
registers on it. The worker stays async: ``soniq worker`` runs the jobs registered
here like any others.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel

from soniq import (
    Concurrency,
    JobCancelled,
    JobContext,
    JobEvent,
    JobFailed,
    JobGone,
    JobOutcome,
    JobStatus,
    RateLimit,
    RateLimited,
    Snooze,
    SoniqError,
    TaskRef,
    task_ref,
)
from soniq.enqueue.plan import Target
from soniq_sync.app import Soniq
from soniq_sync.waiting import JobHandle

__all__ = [
    "Concurrency",
    "JobCancelled",
    "JobContext",
    "JobEvent",
    "JobFailed",
    "JobGone",
    "JobHandle",
    "JobOutcome",
    "JobStatus",
    "RateLimit",
    "RateLimited",
    "Snooze",
    "Soniq",
    "SoniqError",
    "TaskRef",
    "configure",
    "default_app",
    "enqueue",
    "enqueue_many",
    "handle",
    "job",
    "schedule",
    "task_ref",
    "wait_many",
]

F = TypeVar("F", bound=Callable[..., Any])

_default: Soniq | None = None
_default_lock = threading.Lock()


def default_app() -> Soniq:
    """The app behind the module-level functions, created from the environment on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Soniq()
        return _default


def configure(database_url: str | None = None, **settings: Any) -> Soniq:
    """Set the default app's settings (keywords as for ``Soniq(...)``); return the app.

    The default app keeps its registered jobs and hooks; its connections are closed
    and reopen with the new settings on next use. This is
    ``default_app().reconfigure(...)``: a bad value raises and changes nothing.
    """
    app = default_app()
    app.reconfigure(database_url, **settings)
    return app


def job(**options: Any) -> Callable[[F], F]:
    """Register the decorated function on the default app: ``@soniq_sync.job()``."""
    return default_app().job(**options)


def enqueue(
    target: Target,
    *,
    args: Mapping[str, Any] | BaseModel | None = None,
    priority: int | None = None,
    queue: str | None = None,
    scheduled_at: datetime | None = None,
    unique: bool | None = None,
    dedup_key: str | None = None,
    limit_key: str | None = None,
    watch: bool = False,
    connection: Any = None,
    **func_kwargs: Any,
) -> str:
    """``Soniq.enqueue`` on the default app: queue one job, return its id."""
    return default_app().enqueue(
        target,
        args=args,
        priority=priority,
        queue=queue,
        scheduled_at=scheduled_at,
        unique=unique,
        dedup_key=dedup_key,
        limit_key=limit_key,
        watch=watch,
        connection=connection,
        **func_kwargs,
    )


def schedule(
    target: Target,
    run_at: datetime | timedelta | float,
    *,
    args: Mapping[str, Any] | BaseModel | None = None,
    priority: int | None = None,
    queue: str | None = None,
    unique: bool | None = None,
    dedup_key: str | None = None,
    limit_key: str | None = None,
    watch: bool = False,
    connection: Any = None,
    **func_kwargs: Any,
) -> str:
    """``Soniq.schedule`` on the default app: queue a job to run at ``run_at``."""
    return default_app().schedule(
        target,
        run_at,
        args=args,
        priority=priority,
        queue=queue,
        unique=unique,
        dedup_key=dedup_key,
        limit_key=limit_key,
        watch=watch,
        connection=connection,
        **func_kwargs,
    )


def enqueue_many(
    target: Target,
    args_list: Iterable[Mapping[str, Any] | BaseModel],
    *,
    priority: int | None = None,
    queue: str | None = None,
    scheduled_at: datetime | None = None,
    unique: bool | None = None,
    limit_key: str | None = None,
    watch: bool = False,
    connection: Any = None,
) -> list[str]:
    """``Soniq.enqueue_many`` on the default app: one job per item, ids in order."""
    return default_app().enqueue_many(
        target,
        args_list,
        priority=priority,
        queue=queue,
        scheduled_at=scheduled_at,
        unique=unique,
        limit_key=limit_key,
        watch=watch,
        connection=connection,
    )


def handle(
    job_id: str, *, result_model: type[Any] | None = None, ref: TaskRef[Any] | None = None
) -> JobHandle:
    """``Soniq.handle`` on the default app: wait for a job's outcome, blocking
    (``soniq_sync.handle(job_id).result(timeout=10)`` in a view)."""
    return default_app().handle(job_id, result_model=result_model, ref=ref)


def wait_many(
    job_ids: Iterable[str],
    timeout: float | None = None,
    *,
    return_when: str = "all",
    allow_in_handler: bool = False,
) -> dict[str, JobOutcome]:
    """``Soniq.wait_many`` on the default app."""
    return default_app().wait_many(
        job_ids, timeout, return_when=return_when, allow_in_handler=allow_in_handler
    )
