"""Writing job rows on a caller's own async connection, whatever driver it came from.

One small adapter per driver family runs Soniq's named queries in that driver's
placeholder style, inside the transaction the caller has open. ``async_adapter``
picks the adapter; anything else gets a SoniqError that says what to pass instead.
"""

from __future__ import annotations

import psycopg

from soniq.adapters.base import AsyncAdapter
from soniq.adapters.copy_format import COPY_COLUMNS, copy_text
from soniq.adapters.for_psycopg import PsycopgAsyncAdapter
from soniq.errors import UNSUPPORTED_CONNECTION, SoniqError

__all__ = [
    "COPY_COLUMNS",
    "AsyncAdapter",
    "PsycopgAsyncAdapter",
    "async_adapter",
    "copy_text",
    "driver_family",
    "sqlalchemy_factory_error",
    "type_name",
]

_ACCEPTED = (
    "a psycopg AsyncConnection, an asyncpg Connection, or a SQLAlchemy AsyncConnection "
    "or AsyncSession"
)


def async_adapter(conn: object) -> AsyncAdapter:
    """The adapter for ``conn``, or a SoniqError saying what to pass instead."""
    if isinstance(conn, psycopg.AsyncConnection):
        return PsycopgAsyncAdapter(conn)
    family = driver_family(conn)
    if family == "asyncpg" and _is_asyncpg_connection(conn):
        from soniq.adapters.for_asyncpg import AsyncpgAdapter

        return AsyncpgAdapter(conn)
    if family == "sqlalchemy":
        session = _sqlalchemy_async(conn)
        if session is not None:
            from soniq.adapters.for_sqlalchemy import SQLAlchemyAsyncAdapter

            return SQLAlchemyAsyncAdapter(session)
        factory_error = sqlalchemy_factory_error(conn, api_is_async=True)
        if factory_error is not None:
            raise factory_error
    blocking_sqlalchemy = family == "sqlalchemy" and not _is_sqlalchemy_asyncio(conn)
    if (
        isinstance(conn, psycopg.Connection)
        or family in ("psycopg2", "django")
        or blocking_sqlalchemy
    ):
        raise SoniqError(
            UNSUPPORTED_CONNECTION,
            f"connection= got a blocking {type_name(conn)}, but this is the async API. "
            "Enqueue through soniq_sync (same calls, blocking) from blocking code, or "
            f"pass {_ACCEPTED} here.",
            connection_type=type_name(conn),
        )
    raise SoniqError(
        UNSUPPORTED_CONNECTION,
        f"connection= got a {type_name(conn)}, which Soniq cannot write through. Pass "
        f"{_ACCEPTED}, in an open transaction.",
        connection_type=type_name(conn),
    )


def driver_family(conn: object) -> str:
    """The top-level package of ``conn``'s class: ``psycopg``, ``asyncpg``, ``django`` ..."""
    return type(conn).__module__.partition(".")[0]


def type_name(obj: object) -> str:
    """``module.QualName`` of ``obj``'s class, for error messages."""
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def sqlalchemy_factory_error(conn: object, *, api_is_async: bool) -> SoniqError | None:
    """For a SQLAlchemy engine or sessionmaker, an error that says what to pass instead.

    Both are easy to pass by mistake, and neither has a transaction to write in.
    """
    from sqlalchemy.engine import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
    from sqlalchemy.orm import sessionmaker

    if not isinstance(conn, (Engine, AsyncEngine, sessionmaker, async_sessionmaker)):
        return None
    what = "an engine" if isinstance(conn, (Engine, AsyncEngine)) else "a session factory"
    if api_is_async:
        fix = (
            "Pass the AsyncConnection from `async with engine.begin() as conn:`, or an "
            "AsyncSession with a transaction open (`async with session.begin():`)."
        )
    else:
        fix = (
            "Pass the Connection from `with engine.begin() as conn:`, or a Session with a "
            "transaction open (`with session.begin():`)."
        )
    if _is_sqlalchemy_asyncio(conn) != api_is_async:
        fix += (
            " Also, this is the async API: blocking code enqueues through soniq_sync."
            if api_is_async
            else " Also, this is the blocking API: async code enqueues through soniq.Soniq."
        )
    return SoniqError(
        UNSUPPORTED_CONNECTION,
        f"connection= got a SQLAlchemy {type(conn).__name__}, which is {what}, not a "
        f"connection in a transaction. {fix}",
        connection_type=type_name(conn),
    )


def _is_sqlalchemy_asyncio(conn: object) -> bool:
    """Whether ``conn`` comes from SQLAlchemy's asyncio extension."""
    return type(conn).__module__.startswith("sqlalchemy.ext.asyncio")


def _is_asyncpg_connection(conn: object) -> bool:
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

    return isinstance(conn, (asyncpg.Connection, PoolConnectionProxy))


def _sqlalchemy_async(conn: object) -> object | None:
    """The AsyncConnection or AsyncSession to execute on, or None if ``conn`` is neither."""
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_scoped_session

    if isinstance(conn, async_scoped_session):
        conn = conn()  # the session of the current scope
    return conn if isinstance(conn, (AsyncConnection, AsyncSession)) else None
