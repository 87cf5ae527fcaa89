"""Applying the numbered ``sql/migrations/*.sql`` files, once each, in order."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import psycopg

from soniq.storage.migration_sources import MigrationSource
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


def _all_files(sources: Sequence[MigrationSource]) -> list[tuple[str, str]]:
    """Soniq's migrations, then each plugin source's, in order."""
    files = migration_files()
    for source in sources:
        files.extend(source.files())
    return files


def _all_versions(sources: Sequence[MigrationSource]) -> list[str]:
    versions = [version for version, _ in migration_files()]
    for source in sources:
        versions.extend(source.versions())
    return versions


async def apply_migrations(
    conn: psycopg.AsyncConnection[Any], sources: Sequence[MigrationSource] = ()
) -> list[str]:
    """Apply every pending migration (Soniq's, then the plugin ``sources``') in one
    transaction; return the versions applied."""
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SETUP_LOCK_KEY,))
        await conn.execute(_BOOKKEEPING)
        cur = await conn.execute("SELECT version FROM soniq_migrations")
        done = {row[0] for row in await cur.fetchall()}
        for version, sql in _all_files(sources):
            if version in done:
                continue
            logger.info("applying migration %s", version)
            await conn.execute(sql.encode())
            await conn.execute("INSERT INTO soniq_migrations (version) VALUES (%s)", (version,))
            applied.append(version)
    return applied


async def pending_migrations(
    conn: psycopg.AsyncConnection[Any], sources: Sequence[MigrationSource] = ()
) -> list[str]:
    """Versions not yet applied (all of them on an empty database), plugin ones too."""
    cur = await conn.execute("SELECT to_regclass('soniq_migrations') IS NOT NULL")
    row = await cur.fetchone()
    done: set[str] = set()
    if row and row[0]:
        cur = await conn.execute("SELECT version FROM soniq_migrations")
        done = {r[0] for r in await cur.fetchall()}
    return [version for version in _all_versions(sources) if version not in done]


async def migration_status(
    conn: psycopg.AsyncConnection[Any], sources: Sequence[MigrationSource] = ()
) -> dict[str, Any]:
    """``applied`` (``version``, ``applied_at``), ``pending`` and ``unknown`` versions
    (see :func:`soniq.sql.migration_report`); the plugin ``sources``' versions count as
    known."""
    cur = await conn.execute(QUERIES["schema_version"].psycopg)
    row = await cur.fetchone()
    applied: list[dict[str, Any]] = []
    if row and row[0]:
        cur = await conn.execute(QUERIES["migrations_applied"].psycopg)
        applied = [{"version": v, "applied_at": at} for v, at in await cur.fetchall()]
    return migration_report(applied, _all_versions(sources))
