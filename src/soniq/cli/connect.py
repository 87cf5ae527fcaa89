"""One-shot commands: build an app, ask it one thing, close it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from soniq.app import Soniq
from soniq.cli.output import run

T = TypeVar("T")


def with_app(database_url: str | None, ask: Callable[[Soniq], Awaitable[T]]) -> T:
    """Run ``ask(app)`` on an app for ``database_url`` (else $SONIQ_DATABASE_URL) and
    close the app; errors become the usual one line and exit status 1."""

    async def go() -> T:
        app = Soniq(database_url=database_url)
        try:
            return await ask(app)
        finally:
            await app.close()

    return run(go)
