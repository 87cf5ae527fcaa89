"""Joining Django's open transaction on every blocking enqueue, app installed or not.

``soniq_sync.Soniq`` (the default app behind ``soniq_sync.enqueue`` and any app of
your own) asks :func:`django_transaction` before writing a job without
``connection=`` or ``connection_provider``. When Django is imported and configured
and the database of ``settings.SONIQ['DATABASE_ALIAS']`` (default ``"default"``) is in
a transaction (``transaction.atomic()``, ``ATOMIC_REQUESTS``, autocommit off), the job
is written through that connection, so it commits or rolls back with it.

It cannot join when Soniq's jobs live elsewhere: another PostgreSQL database, a
database that is not PostgreSQL behind the alias, or a SQLite file. The job is then
written at once, as it always was, and a warning on the ``soniq.django`` logger says so
once per process. The in-memory test backend never joins, by design and silently.
A setting that cannot work (an unknown alias, one that is not PostgreSQL named in
``SONIQ``, no database URL at all) or a Django connection Soniq cannot write through
raises a SoniqError instead, before anything is written.

Nothing here imports Django: the caller checks ``sys.modules`` first, so processes
without Django pay one dictionary lookup per enqueue.
"""

from __future__ import annotations

import getpass
import logging
import os
import sys
import threading
from collections.abc import Mapping
from typing import Any

from soniq.app_base import AppBase
from soniq.errors import (
    DATABASE_URL_MISSING,
    INVALID_SETTING,
    TRANSACTION_NOT_JOINABLE,
    UNSUPPORTED_CONNECTION,
    SoniqError,
)
from soniq.storage.urls import (
    conninfo_params,
    describe_server,
    normalise_database_url,
    storage_kind,
)

__all__ = ["DJANGO_DB", "django_transaction", "in_transaction"]

logger = logging.getLogger("soniq.django")

#: Without this module in ``sys.modules`` no Django connection can exist.
DJANGO_DB = "django.db"

_SETTING = "SONIQ"
_ALIAS_KEY = "DATABASE_ALIAS"
_DEFAULT_ALIAS = "default"
_WHERE = f"settings.{_SETTING}[{_ALIAS_KEY!r}]"
#: Host names and socket directories that all mean "the server on this machine".
_LOCAL_HOSTS = frozenset({"", "localhost", "127.0.0.1", "::1"})

# (Soniq's URL, what the alias's URL is built from) -> same database?
_same: dict[tuple[object, ...], bool] = {}
# Driver connection classes Soniq has an adapter for.
_writable: set[type] = set()
_warned: set[tuple[str, ...]] = set()
_warned_lock = threading.Lock()


def django_transaction(app: AppBase) -> object | None:
    """The connection ``app``'s enqueue must write on (the driver's, under Django's), or
    None for the app's own store.

    Call only with ``"django.db"`` in ``sys.modules``.
    """
    settings = sys.modules["django.conf"].settings
    if not settings.configured:
        return None
    url = app.settings.database_url
    if url is None and storage_kind(app.settings) == "postgres":
        raise _no_url()
    alias, named = _alias(settings)
    connections = sys.modules[DJANGO_DB].connections
    try:
        conn = connections[alias]
    except Exception:
        if alias in settings.DATABASES:
            raise
        from soniq_sync.django.conf import check_alias

        check_alias(alias, _WHERE)  # raises SONIQ_INVALID_SETTING for an unknown alias
        raise
    if named and conn.vendor != "postgresql":
        from soniq_sync.django.conf import check_alias

        check_alias(alias, _WHERE)
    if not in_transaction(conn):
        return None
    kind = storage_kind(app.settings)
    if kind == "memory":
        return None
    if kind == "sqlite":
        _warn_once(
            ("sqlite", alias, str(url)),
            "Soniq keeps its jobs in a SQLite file (%s), which cannot take part in the "
            "transaction open on Django's database %r: the job was written at once and "
            "stays even if that transaction rolls back. For jobs that commit with your "
            "data, keep Soniq's tables in that PostgreSQL database (the entry of "
            "DATABASES that SONIQ['DATABASE_ALIAS'] names, 'default' unless set); to "
            "enqueue only after a commit, call enqueue from transaction.on_commit(). "
            "Logged once per process.",
            url,
            alias,
        )
        return None
    assert url is not None
    if conn.vendor != "postgresql":
        _warn_once(
            ("vendor", alias, url),
            "Django's database %r is %s, so enqueue() inside its transaction cannot "
            "join it: Soniq's jobs are in PostgreSQL (%s). The job was committed at once "
            "through Soniq's own connections and stays even if the transaction rolls "
            "back. If a PostgreSQL entry of DATABASES holds Soniq's tables, name it in "
            "SONIQ['DATABASE_ALIAS']; to enqueue only after a commit, call enqueue from "
            "transaction.on_commit(). Logged once per process.",
            alias,
            conn.vendor,
            describe_server(normalise_database_url(url)),
        )
        return None
    if not _same_database(url, alias, conn.settings_dict):
        from soniq_sync.django.conf import database_url_for

        _warn_once(
            ("database", alias, url),
            "enqueue() inside a transaction on Django's database %r (%s) did not join "
            "it: Soniq's database is %s, another database. The job was committed at once "
            "through Soniq's own connections and stays even if the transaction rolls "
            "back. If Soniq's tables are in the database of another DATABASES entry, "
            "name that entry in SONIQ['DATABASE_ALIAS']. To use %r's database, point "
            "Soniq's URL at it, or leave the URL unset and add 'soniq_sync.django' to "
            "INSTALLED_APPS, which builds it from DATABASES. To enqueue only after a "
            "commit, call enqueue from transaction.on_commit(). Logged once per process.",
            alias,
            describe_server(database_url_for(alias)),
            describe_server(normalise_database_url(url)),
            alias,
        )
        return None
    return _driver_connection(alias, conn)


def in_transaction(conn: Any) -> bool:
    """Whether Django's ``conn`` has a transaction a write would land in.

    An atomic block; autocommit switched off by hand (``set_autocommit(False)``); or a
    database with ``AUTOCOMMIT: False`` whose connection is not open yet, where the
    first statement starts the transaction the caller later commits.
    """
    if conn.in_atomic_block:
        return True
    if conn.connection is not None:
        # The attribute, not get_autocommit(): that one connects, and refuses to run
        # in a thread with an event loop.
        return not conn.autocommit
    return conn.settings_dict.get("AUTOCOMMIT") is False


def _alias(settings: Any) -> tuple[str, bool]:
    """``SONIQ['DATABASE_ALIAS']`` and whether it was set, or SONIQ_INVALID_SETTING."""
    raw = getattr(settings, _SETTING, None)
    if raw is None:
        return _DEFAULT_ALIAS, False
    if not isinstance(raw, Mapping):
        raise SoniqError(
            INVALID_SETTING,
            f"settings.SONIQ must be a dict such as {{'DATABASE_ALIAS': 'default'}}, "
            f"got {type(raw).__name__}.",
            setting=_SETTING,
        )
    alias = raw.get(_ALIAS_KEY)
    if alias is None:
        return _DEFAULT_ALIAS, False
    if not isinstance(alias, str):
        raise SoniqError(
            INVALID_SETTING,
            f"{_WHERE} is {alias!r}; it must be the name of an entry of settings.DATABASES.",
            setting=_WHERE,
        )
    return alias, True


def _same_database(url: str, alias: str, settings_dict: Mapping[str, Any]) -> bool:
    """Whether Soniq's URL and Django's alias name one host, port and database."""
    options = settings_dict.get("OPTIONS") or {}
    key = (
        url,
        *(settings_dict.get(k) for k in ("NAME", "USER", "HOST", "PORT")),
        options.get("service"),
    )
    same = _same.get(key)
    if same is None:
        from soniq_sync.django.conf import database_url_for

        same = _server(normalise_database_url(url)) == _server(database_url_for(alias))
        if len(_same) > 64:
            _same.clear()
        _same[key] = same
    return same


def _server(url: str) -> tuple[str, str, str, str]:
    """(service, host, port, dbname) with libpq's defaults filled in.

    Loopback names and Unix socket directories count as one local host, since a
    server on this machine answers on all of them.
    """
    params = conninfo_params(url)
    env = os.environ
    service = str(params.get("service") or env.get("PGSERVICE") or "")
    host = str(params.get("host") or params.get("hostaddr") or env.get("PGHOST") or "").lower()
    if host in _LOCAL_HOSTS or host.startswith("/"):
        host = "localhost"
    port = str(params.get("port") or env.get("PGPORT") or "5432")
    user = params.get("user") or env.get("PGUSER") or getpass.getuser()
    dbname = str(params.get("dbname") or env.get("PGDATABASE") or user)
    return service, host, port, dbname


def _driver_connection(alias: str, conn: Any) -> object:
    """The driver connection under Django's ``conn``, or SONIQ_TRANSACTION_NOT_JOINABLE
    if Soniq cannot write through it (checked before anything is written)."""
    if conn.connection is None:  # AUTOCOMMIT off and not connected yet
        conn.ensure_connection()
    raw: object = conn.connection
    if type(raw) in _writable:
        return raw
    from soniq_sync.adapters import sync_adapter

    try:
        sync_adapter(raw)
    except SoniqError as exc:
        if exc.code != UNSUPPORTED_CONNECTION:
            raise
        raise SoniqError(
            TRANSACTION_NOT_JOINABLE,
            f"enqueue() inside a transaction on Django's database {alias!r} must write the "
            f"job in that transaction, but Django's driver connection there is a "
            f"{exc.details.get('connection_type')}, which Soniq cannot write through (it "
            "writes through psycopg 3 and psycopg2 connections). Nothing was written. "
            "Use a database backend on psycopg or psycopg2 for that alias, or enqueue "
            "after the commit: transaction.on_commit(lambda: soniq_sync.enqueue(...)).",
            alias=alias,
            connection_type=exc.details.get("connection_type"),
        ) from None
    _writable.add(type(raw))
    return raw


def _no_url() -> SoniqError:
    return SoniqError(
        DATABASE_URL_MISSING,
        "No database URL for this Soniq app. In a Django project, add 'soniq_sync.django' "
        "to INSTALLED_APPS: the default app (soniq_sync.enqueue) then uses the database "
        "of DATABASES[SONIQ['DATABASE_ALIAS']]. Otherwise set SONIQ_DATABASE_URL, or pass "
        "soniq_sync.Soniq(database_url=...).",
    )


def _warn_once(key: tuple[str, ...], message: str, *args: object) -> None:
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    logger.warning(message, *args)
