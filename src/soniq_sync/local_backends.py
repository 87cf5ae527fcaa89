"""Blocking SQLite and in-memory backends (re-export; the code is in soniq_sync.storage.local)."""

from soniq_sync.storage.local import (
    MemoryBackend,
    SQLiteBackend,
    SqliteSessionAdapter,
)

__all__ = ["MemoryBackend", "SQLiteBackend", "SqliteSessionAdapter"]
