"""One app per command: opened for the command's work, closed after it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from soniq.app import Soniq
from soniq.app_base import AppBase
from soniq.cli.output import run
from soniq.errors import BackendUnsupportedError
from soniq.storage.urls import storage_kind

T = TypeVar("T")


def with_app(database_url: str | None, use: Callable[[Soniq], Awaitable[T]]) -> T:
    """Run ``use(app)`` on an app for ``database_url`` (or ``$SONIQ_DATABASE_URL``).

    The app is closed afterwards; an error becomes ``output.fail``'s one line.
    """

    async def go() -> T:
        app = Soniq(database_url=database_url)
        refuse_memory(app)
        try:
            return await use(app)
        finally:
            await app.close()

    return run(go)


def refuse_memory(app: AppBase) -> None:
    """A command runs in a process of its own, which can't see an app's memory store."""
    if storage_kind(app.settings) == "memory":
        raise BackendUnsupportedError(
            "The memory backend keeps jobs inside one process, so a soniq command (a "
            "process of its own) would only ever see an empty queue. Point it at a SQLite "
            "file (SONIQ_DATABASE_URL=sqlite:///jobs.db) or PostgreSQL instead, and unset "
            "SONIQ_BACKEND=memory for it.",
            backend="memory",
        )
