"""The base of the blocking app: ``soniq.app_base.AppBase`` plus blocking worker methods.

The worker is async only. These methods run it on an event loop of their own, for
scripts, management commands and tests that want to process jobs in-process. Enqueues
also join Django's open transaction (see :mod:`soniq_sync.django.join`), which only
blocking code can have.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import anyio

from soniq.app_base import AppBase
from soniq_sync.django.join import DJANGO_DB, django_transaction

if TYPE_CHECKING:
    from soniq.worker import Worker

__all__ = ["SyncAppBase"]


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
        """
        from soniq.app import async_twin

        return async_twin(self).worker()

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
        from soniq.app import async_twin

        twin = async_twin(self)

        async def run() -> bool:
            try:
                return await twin.run_worker(concurrency, run_once, queues)
            finally:
                await twin.close()

        return anyio.run(run)
