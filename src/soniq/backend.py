"""Storage backends (re-export; the code is in soniq.storage.backend)."""

from soniq.storage.backend import (
    SWEEP_LOCK_KEY,
    PostgresBackend,
    Row,
    StorageBackend,
    connect,
    make_backend,
)

__all__ = ["SWEEP_LOCK_KEY", "PostgresBackend", "Row", "StorageBackend", "connect", "make_backend"]
