"""The in-memory backend under the original's import path."""

from soniq.storage.local import MemoryBackend

__all__ = ["MemoryBackend"]
