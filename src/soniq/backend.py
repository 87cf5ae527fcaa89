"""Storage backends (re-export; the code is in soniq.storage.backend and .factory)."""

from soniq.storage.backend import (
    SWEEP_LOCK_KEY,
    PostgresBackend,
    Row,
    StorageBackend,
    connect,
)
from soniq.storage.factory import make_backend

__all__ = ["SWEEP_LOCK_KEY", "PostgresBackend", "Row", "StorageBackend", "connect", "make_backend"]
