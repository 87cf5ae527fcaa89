"""Whether a caller's connection has a transaction open, whatever its driver."""

from __future__ import annotations

import sys

import psycopg
from psycopg.pq import TransactionStatus

from soniq.adapters import driver_family


def in_transaction(conn: object) -> bool:
    """Whether writes on ``conn`` wait for a commit (False: each commits at once).

    Known for psycopg (and Django's connection on it) and asyncpg; other drivers'
    sessions (SQLAlchemy, psycopg2 outside autocommit) always run in a transaction.
    """
    raw = conn
    if "django" in sys.modules:
        from soniq_sync.adapters.for_django import django_driver_connection

        raw = django_driver_connection(conn) or conn
    if isinstance(raw, (psycopg.Connection, psycopg.AsyncConnection)):
        idle = raw.info.transaction_status == TransactionStatus.IDLE
        return not (raw.autocommit and idle)
    if driver_family(raw) == "asyncpg":
        return bool(raw.is_in_transaction())  # type: ignore[attr-defined]
    return True
