"""Storage backends under the original's import path (the code is in soniq.storage).

``StorageBackend`` is the base every backend implements; ``PostgresBackend``,
``SQLiteBackend`` and ``MemoryBackend`` are the three Soniq ships, also importable from
``soniq.backends.postgres``, ``soniq.backends.sqlite`` and ``soniq.backends.memory``.
"""

from soniq.storage.backend import PostgresBackend, StorageBackend
from soniq.storage.local import MemoryBackend, SQLiteBackend

__all__ = ["MemoryBackend", "PostgresBackend", "SQLiteBackend", "StorageBackend"]
