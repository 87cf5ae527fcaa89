"""The PostgreSQL backend under the original's import path."""

from soniq.storage.backend import PostgresBackend

__all__ = ["PostgresBackend"]
