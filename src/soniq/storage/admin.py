"""Server administration on PostgreSQL: scratch and test databases.

For ``soniq demo`` (async) and the pytest plugin (blocking). Each call runs on an
autocommit connection of its own to the server's maintenance database, since
CREATE and DROP DATABASE cannot run in a transaction.
"""

from __future__ import annotations

from typing import Any

import psycopg

from soniq.settings import SoniqSettings
from soniq.storage.backend import connect
from soniq.storage.queries import QUERIES

#: Any error the server raises for an administrative statement it refused.
ERRORS: tuple[type[Exception], ...] = (psycopg.Error,)


def execute(url: str, query: str, params: dict[str, Any] | None = None, **names: str) -> None:
    """Run named query ``query`` on ``url``, outside a transaction (blocking).

    ``names`` fill the query's ``{placeholders}`` as quoted identifiers.
    """
    statement = QUERIES[query].with_identifiers(**names)
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(statement, params)


def ping(url: str) -> None:
    """Check that the server answers; one of :data:`ERRORS` if not."""
    execute(url, "testing_ping")


def create_database(url: str, name: str, template: str) -> None:
    """Create database ``name`` as a copy of ``template`` (blocking)."""
    execute(url, "create_database", database=name, template=template)


def drop_database(url: str, name: str) -> None:
    """Drop database ``name``, ending any session left on it (blocking)."""
    execute(url, "drop_database", database=name)


def seal_template(url: str, name: str) -> None:
    """Make database ``name`` a template no one connects to, and end its sessions."""
    execute(url, "testing_close_template", database=name)
    execute(url, "testing_end_sessions", {"database": name})


async def create_database_async(
    url: str, settings: SoniqSettings, name: str, template: str
) -> None:
    """Create database ``name`` as a copy of ``template``."""
    statement = QUERIES["create_database"].with_identifiers(database=name, template=template)
    async with await connect(url, settings) as conn:
        await conn.execute(statement)


async def drop_database_async(url: str, settings: SoniqSettings, name: str) -> None:
    """Drop database ``name``."""
    async with await connect(url, settings) as conn:
        await conn.execute(QUERIES["drop_database"].with_identifiers(database=name))
