"""Soniq's own connections: URL checks, the pool, and a clear error when unreachable."""

from __future__ import annotations

import logging
from contextlib import AbstractAsyncContextManager
from typing import Any

import psycopg
from psycopg import conninfo
from psycopg_pool import AsyncConnectionPool

from soniq.errors import (
    DATABASE_UNREACHABLE,
    DATABASE_URL_MISSING,
    INVALID_DATABASE_URL,
    SoniqError,
)
from soniq.settings import SoniqSettings

logger = logging.getLogger("soniq.backend")

_SCHEMES = ("postgresql://", "postgres://")


def normalise_database_url(url: object) -> str:
    """Check that ``url`` is a PostgreSQL URL or conninfo string; return it for libpq.

    SQLAlchemy spellings such as ``postgresql+asyncpg://`` are accepted and reduced to
    plain ``postgresql://``.
    """
    if not isinstance(url, str) or not url.strip():
        raise SoniqError(
            INVALID_DATABASE_URL,
            f"The database URL must be a non-empty string, got {url!r}.",
        )
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if sep and "+" in scheme and scheme.split("+")[0] in ("postgresql", "postgres"):
        url = f"postgresql://{rest}"
    elif sep and not url.startswith(_SCHEMES):
        raise SoniqError(
            INVALID_DATABASE_URL,
            f"Database URL scheme {scheme + '://'!r} is not PostgreSQL. Use "
            "postgresql://user:password@host:5432/dbname.",
        )
    try:
        parts = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise SoniqError(
            INVALID_DATABASE_URL,
            f"The database URL does not parse ({str(exc).strip()}). Use "
            "postgresql://user:password@host:5432/dbname.",
        ) from None
    port = str(parts.get("port") or "5432")
    if not all(p.strip().isdigit() for p in port.split(",")):
        raise SoniqError(
            INVALID_DATABASE_URL,
            f"The database URL's port {port!r} is not a number. Use "
            "postgresql://user:password@host:5432/dbname.",
        )
    return url


def describe_server(url: str) -> str:
    """``host:port/dbname`` of a URL, for error messages (never the password)."""
    parts = conninfo.conninfo_to_dict(url)
    host = str(parts.get("host") or "localhost (default socket)")
    port = str(parts.get("port") or "5432")
    return f"{host}:{port}/{parts.get('dbname') or '(default database)'}"


def require_url(settings: SoniqSettings) -> str:
    """The configured URL, or a SoniqError that says how to give one."""
    if settings.database_url is None:
        raise SoniqError(
            DATABASE_URL_MISSING,
            "No database URL configured. Pass Soniq(database_url='postgresql://...') "
            "or set SONIQ_DATABASE_URL.",
        )
    return normalise_database_url(settings.database_url)


async def connect(url: str, settings: SoniqSettings) -> psycopg.AsyncConnection[Any]:
    """One autocommit connection, or SONIQ_DATABASE_UNREACHABLE naming the server."""
    try:
        return await psycopg.AsyncConnection.connect(
            url, autocommit=True, connect_timeout=max(1, round(settings.connect_timeout))
        )
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SoniqError(
            DATABASE_UNREACHABLE,
            f"Cannot connect to PostgreSQL at {describe_server(url)}: {reason}. Check that "
            "the server is running and SONIQ_DATABASE_URL is right.",
            server=describe_server(url),
        ) from None


class PostgresBackend:
    """Soniq's connection pool. ``acquire()`` lends a psycopg ``AsyncConnection``."""

    def __init__(
        self, url: str, settings: SoniqSettings, *, durable: bool = True, name: str = "soniq"
    ) -> None:
        self.url = url
        self.settings = settings
        kwargs: dict[str, Any] = {"autocommit": True}
        if not durable:
            # Commits return before their WAL reaches disk. Only for writes that a
            # server crash may lose without harm (see Worker), never for enqueues.
            kwargs["options"] = "-c synchronous_commit=off"
        self.pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            url,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            kwargs=kwargs,
            # Waiting for a connection fails after this long, so an outage is
            # reported (and retried) instead of hanging for psycopg's default 30 s.
            timeout=settings.connect_timeout,
            open=False,
            name=name,
        )

    async def open(self) -> None:
        """Open the pool, waiting until its first connections are up."""
        await self.pool.open(wait=True, timeout=self.settings.connect_timeout)

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.pool.close()

    def acquire(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        """Borrow an autocommit connection; use ``conn.transaction()`` for a transaction."""
        return self.pool.connection()
