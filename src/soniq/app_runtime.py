"""What an app builds from its settings to run: backend, instruments, plan cache.

An :class:`AppRuntime` belongs to one set of settings. When they change
(``app.reconfigure``, ``app.using_backend``) the app starts a new runtime instead of
patching this one, so nothing in it has to notice that the settings moved.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

from soniq.enqueue.plan import JobPlan
from soniq.observability.instruments import EnqueueInstruments, enqueue_instruments
from soniq.settings import SoniqSettings, StorageKind
from soniq.storage.sqlite_engine import SqliteStore
from soniq.storage.urls import storage_kind

B = TypeVar("B")

#: Plans kept before the cache starts over (apps that enqueue many distinct callables).
MAX_PLANS = 1024


class AppRuntime(Generic[B]):
    """The running side of an app on one set of settings.

    ``B`` is the backend class: the async app's ``soniq.backend.StorageBackend`` or the
    blocking one's. The backend is made on first use by the app (which knows its
    class); ``ready`` says whether it has been connected and its schema checked.
    """

    def __init__(self, settings: SoniqSettings, *, memory: SqliteStore | None = None) -> None:
        self.settings = settings
        self.kind: StorageKind = storage_kind(settings)
        #: Where the jobs live, once made; see the app's ``backend``.
        self.backend: B | None = None
        #: Whether ``ensure_initialized`` succeeded on this runtime's backend.
        self.ready = False
        #: Metrics and tracing of enqueues; None when both are off (the usual case).
        self.instruments: EnqueueInstruments | None = enqueue_instruments(settings)
        #: Checked enqueue calls by their cache key; see ``AppBase._plan``.
        self.plans: dict[tuple[object, ...], JobPlan] = {}
        self._memory = memory
        self._memory_lock = threading.Lock()

    def memory_store(self) -> SqliteStore:
        """The in-memory database of a memory runtime, made once, on first use.

        Every backend of this runtime wraps this one object: the app's own, and the
        async one a blocking app's worker runs on, so they see the same jobs.
        """
        with self._memory_lock:  # a blocking app's threads may get here at once
            if self._memory is None:
                self._memory = SqliteStore(":memory:")
            return self._memory

    def successor(self, settings: SoniqSettings) -> AppRuntime[B]:
        """A new runtime for ``settings``. A memory app that stays on memory keeps its
        database (it lives as long as the app); any other change starts afresh."""
        stays = self.kind == "memory" and storage_kind(settings) == "memory"
        return AppRuntime(settings, memory=self._memory if stays else None)

    def remember(self, key: tuple[object, ...], plan: JobPlan) -> None:
        """Cache ``plan`` under ``key``, starting over when the cache is full."""
        if len(self.plans) > MAX_PLANS:
            self.plans.clear()
        self.plans[key] = plan
