"""The store: every query Soniq runs, as typed methods grouped by area.

``Store(backend)`` serves a worker over a backend it opens itself; ``Store(app)``
serves an app, whose backend may be replaced (closed and made anew) and is made ready
before the app's calls. The areas: ``jobs`` (enqueue, claim, outcomes, inspection),
``dead_letters``, ``schedules``, ``workers`` (presence, recovery, cancel requests,
gauges and statistics), ``tasks`` (the fleet's task registry), ``webhooks``
(endpoints and deliveries), ``queues`` (fleet-wide pauses) and ``limits``
(concurrency and rate limits). Only this package looks queries up by name; backends
and adapters run the ones it gives them.
``soniq_sync/storage/store.py`` is generated from this file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from soniq.adapters.base import AsyncAdapter
from soniq.storage.backend import StorageBackend
from soniq.storage.dead_letters import DeadLetters
from soniq.storage.jobs import Jobs
from soniq.storage.limits import Limits
from soniq.storage.queues import Queues
from soniq.storage.records import Notification
from soniq.storage.schedules import Schedules
from soniq.storage.tasks import Tasks
from soniq.storage.webhooks import Webhooks
from soniq.storage.workers import Workers


class StoreHost(Protocol):
    """What an app's store runs over: its current backend, made ready on demand."""

    @property
    def backend(self) -> StorageBackend:
        """The backend in use now."""

    async def ensure_initialized(self) -> None:
        """Make the backend ready (connect, check the schema); at once when it is."""


class _Ready:
    """A backend its owner opens and closes itself (a worker's)."""

    def __init__(self, backend: StorageBackend) -> None:
        self.backend = backend

    async def ensure_initialized(self) -> None:
        """Nothing to do: the owner opens the backend."""


class Store:
    """Typed access to Soniq's tables, by area, over one backend."""

    def __init__(self, source: StorageBackend | StoreHost) -> None:
        self._host: StoreHost = _Ready(source) if isinstance(source, StorageBackend) else source
        self.jobs = Jobs(self)
        self.dead_letters = DeadLetters(self)
        self.schedules = Schedules(self)
        self.workers = Workers(self)
        self.tasks = Tasks(self)
        self.webhooks = Webhooks(self)
        self.queues = Queues(self)
        self.limits = Limits(self)

    @property
    def backend(self) -> StorageBackend:
        """The backend queries run on now."""
        return self._host.backend

    async def ready(self) -> StorageBackend:
        """The backend, made ready first (for calls that may come before any setup)."""
        await self._host.ensure_initialized()
        return self._host.backend

    @property
    def unavailable(self) -> tuple[type[Exception], ...]:
        """Errors meaning the database is unreachable for now: wait and try again."""
        return self._host.backend.unavailable

    @property
    def errors(self) -> tuple[type[Exception], ...]:
        """Any error the database raises for a statement it did not run."""
        return self._host.backend.errors

    @property
    def duplicate(self) -> tuple[type[Exception], ...]:
        """A unique constraint refused a row."""
        return self._host.backend.duplicate

    async def open(self) -> None:
        """Connect the backend (a worker retries this while it is unavailable)."""
        await self._host.backend.open()

    async def close(self) -> None:
        """Release the backend's connections."""
        await self._host.backend.close()

    def transaction(self) -> AbstractAsyncContextManager[AsyncAdapter]:
        """An adapter whose queries share one transaction, committed on a clean exit."""
        return self._host.backend.transaction()

    def session(self) -> AbstractAsyncContextManager[AsyncAdapter]:
        """An adapter for a statement or two that need no transaction around them."""
        return self._host.backend.session()

    def listen(
        self, channels: Sequence[str], application_name: str | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[Notification]]:
        """A connection of its own that LISTENs on ``channels``; its notifications.

        PostgreSQL only (see ``StorageBackend.notifies``). Connection errors are
        ``unavailable`` ones. ``application_name`` names the connection in
        ``pg_stat_activity`` (None: the URL's, or the server's default).
        """
        return self._host.backend.listen(channels, application_name)
