"""What an area of the store (``jobs``, ``dead_letters``...) needs from the store.

Areas are handed the store that holds them; typing them against this Protocol keeps
``store.py`` the only module that knows every area.
``soniq_sync/storage/area.py`` is generated from this file.
"""

from __future__ import annotations

from typing import Protocol

from soniq.storage.backend import StorageBackend


class StoreAccess(Protocol):
    """The backend queries run on now, and a way to make it ready first."""

    @property
    def backend(self) -> StorageBackend:
        """The backend in use now."""

    async def ready(self) -> StorageBackend:
        """The backend, made ready first (for calls that may come before any setup)."""
