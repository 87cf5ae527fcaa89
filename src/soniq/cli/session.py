"""One app per command: opened for the command's work, closed after it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from soniq.app import Soniq
from soniq.cli.output import run

T = TypeVar("T")


def with_app(database_url: str | None, use: Callable[[Soniq], Awaitable[T]]) -> T:
    """Run ``use(app)`` on an app for ``database_url`` (or ``$SONIQ_DATABASE_URL``).

    The app is closed afterwards; an error becomes ``output.fail``'s one line.
    """

    async def go() -> T:
        app = Soniq(database_url=database_url)
        try:
            return await use(app)
        finally:
            await app.close()

    return run(go)
