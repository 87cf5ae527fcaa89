"""The base of the blocking app: ``soniq.app_base.AppBase`` plus blocking worker methods.

The worker is async only. These methods run it on an event loop of their own, for
scripts, management commands and tests that want to process jobs in-process: the
worker is built from the app's config and an async backend made from the same
settings (for the memory backend, around the app's very in-memory database). Enqueues
also join Django's open transaction (see :mod:`soniq_sync.django.join`), which only
blocking code can have.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import anyio

from soniq.app_base import AppBase
from soniq.errors import schema_missing
from soniq_sync.django.join import DJANGO_DB, django_transaction

if TYPE_CHECKING:
    from soniq.storage.backend import StorageBackend as AsyncStorageBackend
    from soniq.worker import Worker

__all__ = ["SyncAppBase", "prepare_worker_backend"]


class SyncAppBase(AppBase):
    """Settings, registrations and hooks of a blocking app, and its worker methods."""

    def _current_connection(self, connection: object) -> object:
        """As ``AppBase._current_connection``; without ``connection=`` or a
        ``connection_provider``, Django's connection while it is in a transaction."""
        if connection is None and self.connection_provider is None and DJANGO_DB in sys.modules:
            return django_transaction(self)
        return super()._current_connection(connection)

    def worker(self) -> Worker:
        """An async :class:`~soniq.worker.Worker` for this app's jobs, hooks and settings.

        It has a pool of its own; run it inside an event loop: ``anyio.run(w.run)``.
        The hooks and middleware are frozen from then on, until ``close()``.
        """
        return self._worker_on(self._worker_backend())

    def _worker_backend(self) -> AsyncStorageBackend:
        """A new async backend on the app's settings; for the memory backend, around the
        app's own in-memory database, so the worker sees the jobs the app enqueued."""
        from soniq.storage.factory import make_backend

        runtime = self._runtime
        memory = runtime.memory_store() if runtime.kind == "memory" else None
        return make_backend(runtime.settings, memory)

    def _worker_on(self, backend: AsyncStorageBackend) -> Worker:
        """A worker for this app's jobs and hooks on ``backend``."""
        from soniq.worker import Worker

        self._serve_builtin_jobs()
        self._config.freeze(worker=True)
        return Worker(
            backend,
            self.registry,
            self.settings,
            self.hooks,
            self._config.middleware,
            retry_policy=self.retry_policy,
            metrics_sink=self.metrics_sink,
        )

    def run_worker(
        self,
        concurrency: int | None = None,
        run_once: bool = False,
        queues: list[str] | None = None,
    ) -> bool:
        """Run the async worker on a new event loop until stopped; blocks meanwhile.

        With ``run_once`` it processes the jobs runnable now and returns. Returns True
        if any job was processed. Don't call it from a thread that runs an event loop.
        """
        worker = self.worker()

        async def run() -> bool:
            try:
                await prepare_worker_backend(worker.backend)
                return await worker.run(
                    concurrency=concurrency or self.settings.concurrency,
                    run_once=run_once,
                    queues=queues,
                )
            finally:
                await worker.backend.close()

        return anyio.run(run)


async def prepare_worker_backend(backend: AsyncStorageBackend) -> None:
    """Connect a worker's async backend and check its schema, as ``ensure_initialized``
    does for an app (SONIQ_SCHEMA_MISSING when migrations are pending)."""
    pending = await backend.prepare()
    if pending:
        raise schema_missing(pending)
