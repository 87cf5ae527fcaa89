"""Soniq for Django: transactional enqueue and a backend for Django's tasks framework.

Every blocking enqueue without ``connection=`` (``soniq_sync.enqueue``, ``schedule``,
``enqueue_many``, and the same methods of any ``soniq_sync.Soniq``) joins the
transaction open on the database of ``settings.SONIQ['DATABASE_ALIAS']`` (default
``"default"``), so the job commits or rolls back with the view's own writes. This
holds with or without the app in ``INSTALLED_APPS``; see :mod:`soniq_sync.django.join`
for when it cannot join. Outside a transaction the job commits at once, through
Soniq's own pool.

Adding ``"soniq_sync.django"`` to ``INSTALLED_APPS`` also configures
``soniq_sync.default_app()`` from ``settings.SONIQ`` (see :mod:`soniq_sync.django.conf`),
builds its database URL from ``DATABASES``, follows the test runner to the test
database and imports ``SONIQ['JOBS_MODULES']``.

The tasks backend is :class:`soniq_sync.django.backend.SoniqBackend`; workers run
``soniq worker`` with ``SONIQ_JOBS_MODULES=soniq_sync.django.worker``.
"""

from __future__ import annotations

from soniq.app_base import ConnectionProvider

__all__ = ["atomic_connection", "atomic_connection_for"]


def atomic_connection() -> object | None:
    """Django's connection if it has a transaction open, else None.

    Uses the alias of ``settings.SONIQ['DATABASE_ALIAS']`` (default ``"default"``) in
    the calling thread. As a ``Soniq.connection_provider`` it joins that transaction
    without the checks of the automatic join (it does not compare databases); apps
    do not need it any more.
    """
    from soniq_sync.django.configured import configured_alias

    return _open_transaction(configured_alias())


def atomic_connection_for(alias: str) -> ConnectionProvider:
    """A ``connection_provider`` like :func:`atomic_connection`, for database ``alias``.

    For an app whose jobs must join the transactions of another alias than
    ``SONIQ['DATABASE_ALIAS']``.
    """
    from soniq_sync.django.conf import check_alias

    check_alias(alias, "atomic_connection_for(alias)")

    def provider() -> object | None:
        return _open_transaction(alias)

    return provider


def _open_transaction(alias: str) -> object | None:
    from django.db import connections

    from soniq_sync.django.join import in_transaction

    conn = connections[alias]
    return conn if in_transaction(conn) else None
