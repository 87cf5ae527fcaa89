"""The SQLite and in-memory backends (re-export; the code is in soniq.storage.local)."""

from soniq.storage.local import MemoryBackend, SQLiteBackend, SqliteSessionAdapter

__all__ = ["MemoryBackend", "SQLiteBackend", "SqliteSessionAdapter"]
