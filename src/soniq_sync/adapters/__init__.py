"""Writing job rows on a caller's own blocking connection, whatever driver it came from.

The blocking twin of ``soniq.adapters``: psycopg 3 ``Connection``, psycopg2
connections, SQLAlchemy ``Connection``/``Session`` (Flask-SQLAlchemy's ``db.session``
too) and Django's connection. ``sync_adapter`` picks the adapter; anything else gets a
SoniqError that says what to pass instead.
"""

from __future__ import annotations

import sys

import psycopg

from soniq.adapters import driver_family, sqlalchemy_factory_error, type_name
from soniq.errors import UNSUPPORTED_CONNECTION, SoniqError
from soniq_sync.adapters.base import SyncAdapter
from soniq_sync.adapters.for_psycopg import PsycopgAdapter

__all__ = ["PsycopgAdapter", "SyncAdapter", "sync_adapter"]

_ACCEPTED = (
    "a psycopg Connection, a psycopg2 connection, a SQLAlchemy Connection or Session, "
    "or Django's connection"
)


def sync_adapter(conn: object) -> SyncAdapter:
    """The adapter for ``conn``, or a SoniqError saying what to pass instead."""
    if isinstance(conn, psycopg.Connection):
        return PsycopgAdapter(conn)
    family = driver_family(conn)
    if family == "psycopg2" and _is_psycopg2_connection(conn):
        from soniq_sync.adapters.for_psycopg2 import Psycopg2Adapter

        return Psycopg2Adapter(conn)
    if "django" in sys.modules:
        # Checked by type, not by the class's package: database backends outside the
        # django package (PostGIS wrappers, django-prometheus, ...) are Django's too.
        from soniq_sync.adapters.for_django import django_driver_connection

        underneath = django_driver_connection(conn)
        if underneath is not None:
            return sync_adapter(underneath)
    if family == "sqlalchemy":
        session = _sqlalchemy_sync(conn)
        if session is not None:
            from soniq_sync.adapters.for_sqlalchemy import SQLAlchemyAdapter

            return SQLAlchemyAdapter(session)
        factory_error = sqlalchemy_factory_error(conn, api_is_async=False)
        if factory_error is not None:
            raise factory_error
    async_sqlalchemy = type(conn).__module__.startswith("sqlalchemy.ext.asyncio")
    if isinstance(conn, psycopg.AsyncConnection) or family == "asyncpg" or async_sqlalchemy:
        raise SoniqError(
            UNSUPPORTED_CONNECTION,
            f"connection= got an async {type_name(conn)}, but this is the blocking API. "
            "Enqueue through soniq.Soniq (same calls, awaited) from async code, or pass "
            f"{_ACCEPTED} here.",
            connection_type=type_name(conn),
        )
    raise SoniqError(
        UNSUPPORTED_CONNECTION,
        f"connection= got a {type_name(conn)}, which Soniq cannot write through. Pass {_ACCEPTED}.",
        connection_type=type_name(conn),
    )


def _is_psycopg2_connection(conn: object) -> bool:
    import psycopg2.extensions

    return isinstance(conn, psycopg2.extensions.connection)


def _sqlalchemy_sync(conn: object) -> object | None:
    """The Connection or Session to execute on, or None if ``conn`` is neither."""
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session, scoped_session

    if isinstance(conn, scoped_session):
        conn = conn()  # the session of the current scope (Flask-SQLAlchemy's db.session)
    return conn if isinstance(conn, (Connection, Session)) else None
