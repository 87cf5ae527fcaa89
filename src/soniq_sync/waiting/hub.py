"""The blocking app's hub of waits: :mod:`soniq.waiting.hub`'s, on a thread of its own.

Written by hand, not generated: a blocking app's threads (a Django view per request)
share one hub, which runs the async hub on an event loop in a daemon thread, over an
async backend of the app's settings (for the memory backend, around the app's own
in-memory database). So a blocking process holds one LISTEN connection too, however
many threads wait, and the waits behave exactly as the async ones. The thread and its
connections start with the first wait and stop when the app closes.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

from soniq.settings import SoniqSettings
from soniq.storage.store import Store
from soniq.waiting.hub import Subscription as AsyncSubscription
from soniq.waiting.hub import WaitHub as AsyncWaitHub
from soniq.waiting.outcome import JobState
from soniq_sync.app_base import prepare_worker_backend

if TYPE_CHECKING:
    from soniq.storage.backend import StorageBackend as AsyncStorageBackend
    from soniq_sync.app_base import SyncAppBase

T = TypeVar("T")


class _Host:
    """What the async hub serves: an async store over the blocking app's settings."""

    def __init__(self, store: Store, app: SyncAppBase) -> None:
        self.store = store
        self._app = app

    @property
    def settings(self) -> SoniqSettings:
        return self._app.settings


class _Running:
    """The hub's thread, its event loop, backend and async hub."""

    def __init__(self, app: SyncAppBase) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="soniq-waits", daemon=True
        )
        self.backend: AsyncStorageBackend = app._worker_backend()
        # The backend is the hub's own already: its reads need no other.
        self.hub = AsyncWaitHub(_Host(Store(self.backend), app), own_reads=False)
        self.thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        async def shut() -> None:
            try:
                await self.hub.close()
            finally:
                await self.backend.close()

        try:
            self.submit(shut()).result()
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join()
            self.loop.close()


def _result(future: Future[T]) -> T:
    """Block for ``future``; an interruption (KeyboardInterrupt) cancels the wait."""
    try:
        return future.result()
    except BaseException:
        future.cancel()
        raise


class Subscription:
    """The blocking face of :class:`soniq.waiting.hub.Subscription`."""

    def __init__(self, running: _Running, inner: AsyncSubscription) -> None:
        self._running = running
        self._inner = inner

    def next(self) -> JobState | None:
        """The next reading of the job's row (None: it is gone); blocks until then."""
        return _result(self._running.submit(self._inner.next()))

    def close(self) -> None:
        """Unregister (idempotent)."""
        self._running.loop.call_soon_threadsafe(self._inner.close)


class WaitHub:
    """Serves every wait of one blocking app, from any thread (see the module)."""

    def __init__(self, app: SyncAppBase) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._running: _Running | None = None

    def _started(self) -> _Running:
        with self._lock:
            if self._running is None:
                running = _Running(self._app)
                try:
                    _result(running.submit(prepare_worker_backend(running.backend)))
                except BaseException:
                    running.stop()
                    raise
                self._running = running
            return self._running

    def wait(
        self, job_ids: Sequence[str], timeout: float | None, first: bool
    ) -> dict[str, JobState]:
        """As the async hub's ``wait``, blocking the calling thread."""
        running = self._started()
        return _result(running.submit(running.hub.wait(job_ids, timeout, first)))

    def stream(self, job_id: str) -> Subscription:
        """As the async hub's ``stream``: a blocking subscription."""
        running = self._started()

        async def subscribe() -> AsyncSubscription:
            return running.hub.stream(job_id)

        return Subscription(running, _result(running.submit(subscribe())))

    @property
    def pending(self) -> int:
        """How many jobs have a wait or stream registered."""
        running = self._running
        return 0 if running is None else running.hub.pending

    def close(self) -> None:
        """Stop the thread and its connections; pending waits fail."""
        with self._lock:
            running, self._running = self._running, None
        if running is not None:
            running.stop()
