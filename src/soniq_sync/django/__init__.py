"""Soniq for Django: transactional enqueue and a backend for Django's tasks framework.

Add ``"soniq_sync.django"`` to ``INSTALLED_APPS``. At start-up the app configures
``soniq_sync.default_app()`` from ``settings.SONIQ`` (see :mod:`soniq_sync.django.conf`)
and makes every ``soniq_sync.enqueue(...)`` without ``connection=`` write through
Django's connection while a ``transaction.atomic()`` block is open, so the job commits
or rolls back with the view's own writes. Outside an atomic block the job commits at
once, through Soniq's own pool.

For an app of your own, assign the same behaviour::

    app = soniq_sync.Soniq()
    app.connection_provider = soniq_sync.django.atomic_connection

The tasks backend is :class:`soniq_sync.django.backend.SoniqBackend`; workers run
``soniq worker`` with ``SONIQ_JOBS_MODULES=soniq_sync.django.worker``.
"""

from __future__ import annotations

from soniq.app_base import ConnectionProvider

__all__ = ["atomic_connection", "atomic_connection_for"]


def atomic_connection() -> object | None:
    """Django's connection if it has a transaction open, else None.

    Uses the alias of ``settings.SONIQ['DATABASE_ALIAS']`` (default ``"default"``) in
    the calling thread. Meant for ``Soniq.connection_provider``.
    """
    from soniq_sync.django.conf import configured_alias

    return _open_transaction(configured_alias())


def atomic_connection_for(alias: str) -> ConnectionProvider:
    """A ``connection_provider`` like :func:`atomic_connection`, for database ``alias``."""
    from soniq_sync.django.conf import check_alias

    check_alias(alias, "atomic_connection_for(alias)")

    def provider() -> object | None:
        return _open_transaction(alias)

    return provider


def _open_transaction(alias: str) -> object | None:
    from django.db import connections

    conn = connections[alias]
    # Autocommit switched off by hand (transaction.set_autocommit(False)) is a
    # transaction too; a connection not opened yet has nothing to join.
    in_transaction = conn.in_atomic_block or (
        conn.connection is not None and not conn.get_autocommit()
    )
    return conn if in_transaction else None
