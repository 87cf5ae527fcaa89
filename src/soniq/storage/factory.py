"""Choosing a backend from the settings.

``soniq_sync/storage/factory.py`` is generated from this file.
"""

from __future__ import annotations

from soniq.settings import SoniqSettings
from soniq.storage.backend import PostgresBackend, StorageBackend
from soniq.storage.local import MemoryBackend, SQLiteBackend
from soniq.storage.sqlite_engine import SqliteStore
from soniq.storage.urls import require_url, storage_kind


def make_backend(settings: SoniqSettings, memory: SqliteStore | None = None) -> StorageBackend:
    """The backend the settings choose (see ``soniq.storage.urls.storage_kind``).

    ``memory`` is the in-memory backend's database, when the settings choose memory:
    backends made around the same one share its jobs. Without it the memory backend
    makes a database of its own.
    """
    kind = storage_kind(settings)
    if kind == "postgres":
        return PostgresBackend(require_url(settings), settings)
    if kind == "memory":
        return MemoryBackend(settings, memory)
    return SQLiteBackend(settings)
