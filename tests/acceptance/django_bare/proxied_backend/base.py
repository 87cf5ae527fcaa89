"""Django's PostgreSQL backend with its psycopg connection behind a proxy object.

Pooling backends (django-db-connection-pool and the like) hand Django such a wrapper
instead of the driver's connection. Django works through it; Soniq, which writes on the
driver connection itself, cannot, so an enqueue that must join its transaction is
refused.
"""

from __future__ import annotations

from typing import Any

from django.db.backends.postgresql import base


class DriverProxy:
    """Forwards every attribute to the psycopg connection it wraps."""

    def __init__(self, raw: Any) -> None:
        object.__setattr__(self, "_raw", raw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._raw, name, value)


class DatabaseWrapper(base.DatabaseWrapper):  # type: ignore[misc]
    def get_new_connection(self, conn_params: dict[str, Any]) -> DriverProxy:
        return DriverProxy(super().get_new_connection(conn_params))
