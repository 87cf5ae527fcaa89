"""Applying the numbered ``sql/migrations/*.sql`` files, once each, in order."""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from soniq.storage.queries import QUERIES, migration_files, migration_report

logger = logging.getLogger("soniq.migrations")

# Any fixed bigint works; this one is "soniq" in ASCII. Every `setup` takes it, so two
# concurrent runs apply migrations one after the other instead of racing.
SETUP_LOCK_KEY = 0x736F6E6971

_BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS soniq_migrations (
    version    text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


async def apply_migrations(conn: psycopg.AsyncConnection[Any]) -> list[str]:
    """Apply every pending migration in one transaction; return the versions applied."""
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SETUP_LOCK_KEY,))
        await conn.execute(_BOOKKEEPING)
        cur = await conn.execute("SELECT version FROM soniq_migrations")
        done = {row[0] for row in await cur.fetchall()}
        for version, sql in migration_files():
            if version in done:
                continue
            logger.info("applying migration %s", version)
            await conn.execute(sql.encode())
            await conn.execute("INSERT INTO soniq_migrations (version) VALUES (%s)", (version,))
            applied.append(version)
    return applied


async def pending_migrations(conn: psycopg.AsyncConnection[Any]) -> list[str]:
    """Versions not yet applied (all of them on an empty database)."""
    cur = await conn.execute("SELECT to_regclass('soniq_migrations') IS NOT NULL")
    row = await cur.fetchone()
    done: set[str] = set()
    if row and row[0]:
        cur = await conn.execute("SELECT version FROM soniq_migrations")
        done = {r[0] for r in await cur.fetchall()}
    return [version for version, _ in migration_files() if version not in done]


async def migration_status(conn: psycopg.AsyncConnection[Any]) -> dict[str, Any]:
    """``applied`` (``version``, ``applied_at``), ``pending`` and ``unknown`` versions
    (see :func:`soniq.sql.migration_report`)."""
    cur = await conn.execute(QUERIES["schema_version"].psycopg)
    row = await cur.fetchone()
    applied: list[dict[str, Any]] = []
    if row and row[0]:
        cur = await conn.execute(QUERIES["migrations_applied"].psycopg)
        applied = [{"version": v, "applied_at": at} for v, at in await cur.fetchall()]
    shipped = [version for version, _ in migration_files()]
    return migration_report(applied, shipped)
