"""Test helpers for blocking apps: the twins of :mod:`soniq.testing`, without ``await``.

Hand-written: ``drain`` runs the async worker on an event loop of its own (as
``soniq_sync.Soniq.run_worker`` does), and the assertions read the queue through
the app's own connection pool. Don't call ``drain`` from a thread that runs an
event loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
from pydantic import BaseModel

from soniq.errors import INVALID_ARGUMENT, SoniqError
from soniq.storage.store import Store
from soniq.testing import (
    DEFAULT_MAX_ROUNDS,
    DrainReport,
    check_enqueued,
    check_max_rounds,
    drain_rounds,
    expectation,
    in_memory,
    task_name,
)
from soniq_sync.app import Soniq
from soniq_sync.app_base import prepare_worker_backend

__all__ = [
    "DEFAULT_MAX_ROUNDS",
    "DrainReport",
    "assert_enqueued",
    "assert_not_enqueued",
    "drain",
    "enqueued_jobs",
    "in_memory",
]


def drain(
    app: Soniq,
    *,
    skip_delays: bool = False,
    max_rounds: int = DEFAULT_MAX_ROUNDS,
    queues: list[str] | None = None,
) -> DrainReport:
    """Run the app's jobs in this process until no runnable job is left; see
    :func:`soniq.testing.drain`.
    """
    _check_sync_app(app, "drain")
    check_max_rounds(max_rounds)
    backend = app._worker_backend()

    async def run() -> DrainReport:
        try:
            await prepare_worker_backend(backend)
            return await drain_rounds(
                Store(backend),
                lambda: app._worker_on(backend),
                skip_delays=skip_delays,
                max_rounds=max_rounds,
                queues=queues,
                concurrency=app.settings.concurrency,
            )
        finally:
            await backend.close()

    return anyio.run(run)


def enqueued_jobs(
    app: Soniq, task: object = None, *, queue: str | None = None
) -> list[dict[str, Any]]:
    """Jobs waiting to run, oldest first; see :func:`soniq.testing.enqueued_jobs`."""
    _check_sync_app(app, "enqueued_jobs")
    name = None if task is None else task_name(app, task)
    return app.store.jobs.enqueued(name, queue)


def assert_enqueued(
    app: Soniq,
    task: object,
    args: Mapping[str, Any] | BaseModel | None = None,
    *,
    queue: str | None = None,
    count: int | None = None,
) -> list[dict[str, Any]]:
    """Fail unless ``task`` is waiting on the queue; see :func:`soniq.testing.assert_enqueued`."""
    _check_sync_app(app, "assert_enqueued")
    name, expected = expectation(app, task, args, count)
    jobs = app.store.jobs.enqueued(None, None)
    return check_enqueued(jobs, name, expected, queue, count)


def assert_not_enqueued(
    app: Soniq,
    task: object,
    args: Mapping[str, Any] | BaseModel | None = None,
    *,
    queue: str | None = None,
) -> None:
    """Fail if ``task`` is waiting on the queue; see :func:`soniq.testing.assert_not_enqueued`."""
    _check_sync_app(app, "assert_not_enqueued")
    name, expected = expectation(app, task, args, None)
    jobs = app.store.jobs.enqueued(None, None)
    check_enqueued(jobs, name, expected, queue, 0)


def _check_sync_app(app: object, helper: str) -> None:
    if not isinstance(app, Soniq):
        raise SoniqError(
            INVALID_ARGUMENT,
            f"soniq_sync.testing.{helper}() takes a soniq_sync.Soniq app, got "
            f"{type(app).__module__}.{type(app).__name__}. For a soniq.Soniq app "
            f"use `await soniq.testing.{helper}()`.",
        )
