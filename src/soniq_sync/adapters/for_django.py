"""Django's database connection (``django.db.connection`` or ``connections[alias]``).

Django keeps the driver's own connection underneath, inside the transaction
``transaction.atomic()`` opened; Soniq writes on that connection with the psycopg or
psycopg2 adapter, so the job commits or rolls back with the view's writes.
"""

from __future__ import annotations

from typing import Any

from soniq.adapters import type_name
from soniq.errors import UNSUPPORTED_CONNECTION, SoniqError


def django_driver_connection(conn: Any) -> Any:
    """The driver's connection under a Django connection (or its proxy), or None if
    ``conn`` is not one. ``soniq_sync.adapters.sync_adapter`` adapts what it returns."""
    from django.db import connections
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.utils.connection import ConnectionProxy

    if isinstance(conn, ConnectionProxy):
        # django.db.connection; the same proxy class also fronts caches and task
        # backends, so only a proxy over the database connections counts.
        if conn.__dict__.get("_connections") is not connections:
            return None
        conn = connections[conn.__dict__["_alias"]]
    if not isinstance(conn, BaseDatabaseWrapper):
        return None
    if conn.vendor != "postgresql":
        raise SoniqError(
            UNSUPPORTED_CONNECTION,
            f"connection= is Django's {conn.alias!r} database, which is {conn.vendor}. "
            "Soniq's tables live in PostgreSQL: pass the alias of a PostgreSQL database.",
            connection_type=type_name(conn),
        )
    conn.ensure_connection()
    return conn.connection
