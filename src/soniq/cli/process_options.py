"""The options ``soniq worker`` and ``soniq scheduler`` share: ``--jobs-modules``,
``--log-level`` and ``--database-url``, and how each applies."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

from soniq.app import Soniq
from soniq.errors import INVALID_SETTING, SoniqError
from soniq.settings import SoniqSettings
from soniq.storage.urls import describe_server, same_database, sqlite_path

F = TypeVar("F", bound=Callable[..., Any])

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def process_options(command: F) -> F:
    """Add ``--jobs-modules``, ``--log-level`` and ``--database-url`` to ``command``."""
    for option in reversed(
        [
            click.option(
                "--jobs-modules",
                metavar="MODULES",
                help="Comma-separated modules to import as well, after $SONIQ_JOBS_MODULES.",
            ),
            click.option(
                "--log-level",
                type=click.Choice(LOG_LEVELS, case_sensitive=False),
                help="Log level (default: $SONIQ_LOG_LEVEL or INFO).",
            ),
            click.option(
                "--database-url",
                help="The database to use, over $SONIQ_DATABASE_URL. An app in the jobs "
                "modules built with another URL is an error.",
            ),
        ]
    ):
        command = option(command)
    return command


def process_settings(log_level: str | None) -> SoniqSettings:
    """The environment's settings, ``--log-level`` applied."""
    return SoniqSettings.load(None, log_level=log_level) if log_level else SoniqSettings.load()


def merged_modules(configured: tuple[str, ...], extra: str | None) -> list[str]:
    """``$SONIQ_JOBS_MODULES`` then ``--jobs-modules``, in order, each once."""
    more = [name.strip() for name in (extra or "").split(",") if name.strip()]
    return list(dict.fromkeys([*configured, *more]))


def with_database_url(app: Soniq, url: str | None) -> Soniq:
    """``app`` pointed at ``--database-url``, or SONIQ_INVALID_SETTING.

    The flag replaces a URL that came from ``$SONIQ_DATABASE_URL`` (or none). An app
    the jobs modules built with a URL of their own keeps it; a flag naming another
    database is then refused rather than silently ignored.
    """
    if url is None:
        return app
    current = app.settings.database_url
    from_env = (os.environ.get("SONIQ_DATABASE_URL") or "").strip()
    if current is None or current == from_env:
        app.settings = app.settings.model_copy(update={"database_url": url})
        return app
    if not same_database(current, url):
        raise SoniqError(
            INVALID_SETTING,
            f"--database-url names {_where(url)}, but the jobs modules' app was built for "
            f"{_where(current)}. Drop --database-url, or build the app without a URL "
            "(Soniq()) so that SONIQ_DATABASE_URL or the flag chooses.",
            setting="database_url",
        )
    return app


def _where(url: str) -> str:
    path = sqlite_path(url)
    return f"SQLite file {path}" if path is not None else describe_server(url)
