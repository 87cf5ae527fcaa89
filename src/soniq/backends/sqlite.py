"""The SQLite backend under the original's import path."""

from soniq.storage.local import SQLiteBackend

__all__ = ["SQLiteBackend"]
