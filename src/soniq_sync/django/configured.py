"""The default ``soniq_sync`` app as ``settings.SONIQ`` configured it, kept current.

``AppConfig.ready()`` calls :func:`configure_default_app`; the settings themselves are
read by :mod:`soniq_sync.django.conf`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import soniq_sync
from soniq_sync.django.conf import (
    ALIAS_KEY,
    DEFAULT_ALIAS,
    SETTING,
    DjangoSoniqConfig,
    _database_key,
    read_config,
)

# What configure_default_app() last did; read by atomic_connection() and
# follow_database_changes().
_lock = threading.Lock()
_current: DjangoSoniqConfig | None = None
_current_key: tuple[object, ...] | None = None


def configure_default_app() -> soniq_sync.Soniq:
    """Configure ``soniq_sync.default_app()`` from ``settings.SONIQ``; return it.

    The app keeps its registered jobs and its ``connection_provider``. (Enqueue calls
    without ``connection=`` join an open transaction of the configured alias whether
    or not this ran; see :mod:`soniq_sync.django.join`.) ``AppConfig.ready()`` calls
    this; call it again after changing ``SONIQ`` or ``DATABASES`` at run time.
    """
    global _current, _current_key
    config = read_config()
    with _lock:
        app = soniq_sync.configure(**config.overrides)
        _current = config
        _current_key = _database_key(config.alias) if config.url_from_databases else None
    return app


def configured_alias() -> str:
    """The alias ``configure_default_app()`` used, else ``SONIQ['DATABASE_ALIAS']``."""
    config = _current
    if config is not None:
        return config.alias
    from django.conf import settings

    raw = getattr(settings, SETTING, None)
    alias = raw.get(ALIAS_KEY, DEFAULT_ALIAS) if isinstance(raw, Mapping) else DEFAULT_ALIAS
    return str(alias)


def follow_database_changes(sender: object, connection: Any, **kwargs: Any) -> None:
    """``connection_created`` receiver: re-derive the URL if the alias's database moved.

    Django's test runner (and pytest-django) renames ``NAME`` to the test database
    after ``ready()``; without this, Soniq's own pool would keep using the original one.
    """
    config = _current
    if config is None or not config.url_from_databases or connection.alias != config.alias:
        return
    if _database_key(config.alias) != _current_key:
        configure_default_app()
