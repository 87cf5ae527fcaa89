"""Blocking storage backends (re-export; the code is in soniq_sync.storage.backend and .factory)."""

from soniq_sync.storage.backend import (
    SWEEP_LOCK_KEY,
    PostgresBackend,
    Row,
    StorageBackend,
    connect,
)
from soniq_sync.storage.factory import make_backend

__all__ = ["SWEEP_LOCK_KEY", "PostgresBackend", "Row", "StorageBackend", "connect", "make_backend"]
