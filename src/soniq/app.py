"""The ``Soniq`` app: lifecycle, enqueue and inspection.

The async app also starts workers. ``soniq_sync/app.py`` is generated from this file
by ``tools/async_to_sync.py``: write it so that it converts mechanically (no asyncio:
primitives come from ``soniq._acompat``; the worker-only methods are listed in the generator).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

from pydantic import BaseModel

from soniq._acompat import Lock, call_hook
from soniq.adapters import AsyncAdapter, async_adapter
from soniq.adapters.sqlstate import sqlstate
from soniq.app_base import AppBase
from soniq.app_config import load_settings
from soniq.app_runtime import AppRuntime
from soniq.core.registry import is_builtin_task
from soniq.core.retry import RetryPolicy
from soniq.enqueue.ids import new_job_ids
from soniq.enqueue.plan import (
    JobRow,
    Target,
    check_args_list,
    check_watch,
    plan_rows,
    run_at_to_datetime,
)
from soniq.enqueue.task_ref import TaskRef
from soniq.errors import (
    ENQUEUE_CONFLICT,
    INVALID_ARGUMENT,
    JOB_NOT_CANCELLABLE,
    JOB_NOT_FOUND,
    JOB_NOT_RETRYABLE,
    SCHEMA_MISSING,
    SoniqError,
    schema_missing,
)
from soniq.observability.sinks import MetricsSink
from soniq.ops.dead_letter import DeadLetterQueue
from soniq.ops.filters import check_page, job_id_param, job_lookup_key, time_range
from soniq.ops.limits import LimitControl
from soniq.ops.queues import QueueControl
from soniq.ops.results import result_validator
from soniq.ops.retention import prune_age, prune_finished, result_ttl
from soniq.recurring.service import Scheduler, SchedulerRunner
from soniq.storage.backend import StorageBackend
from soniq.storage.factory import make_backend
from soniq.storage.store import Store
from soniq.storage.urls import storage_kind
from soniq.types import JobStatus
from soniq.waiting.handle import JobHandle
from soniq.waiting.hub import WaitHub
from soniq.waiting.outcome import JobOutcome, check_return_when, check_wait, outcome_of

if TYPE_CHECKING:
    from soniq.worker import Worker
if TYPE_CHECKING:  # apart: the blocking twin keeps this one
    from soniq.webhooks.service import WebhookService

T = TypeVar("T")
M = TypeVar("M")

# The counts of get_queue_stats(), whose sum is its "total".
_STAT_KEYS = ("queued", "processing", "done", "dead_letter", "cancelled")

logger = logging.getLogger("soniq.plugins")

# How often a dedup race (the duplicate left the queue between our two statements)
# is retried before giving up.
_DEDUP_ATTEMPTS = 5


class Soniq(AppBase):
    """A job queue on one PostgreSQL database: register handlers, enqueue, inspect.

    ``database_url`` and any setting of :class:`~soniq.settings.SoniqSettings` may be
    given as keywords; they override the ``SONIQ_*`` environment. Connections open
    lazily on first use.
    """

    _runtime: AppRuntime[StorageBackend]

    def __init__(
        self,
        database_url: str | None = None,
        *,
        enqueue_validation: str | None = None,
        plugins: Iterable[object] | None = None,
        autoload_plugins: bool = False,
        retry_policy: RetryPolicy | None = None,
        metrics_sink: MetricsSink | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(
            database_url,
            enqueue_validation=enqueue_validation,
            retry_policy=retry_policy,
            metrics_sink=metrics_sink,
            **settings,
        )
        self._init_lock = Lock()
        self._closed = False  # close() ran; see is_closed
        #: Every query the app runs, over its current backend (see soniq.storage).
        self.store = Store(self)
        self.dead_letter = DeadLetterQueue(self.store, job_id_param, check_page)
        self.scheduler = Scheduler(
            self.store, self._plan_schedule, self._max_attempts_for, self._scheduler_runner
        )
        #: Fleet-wide pause and resume of queues (PostgreSQL only).
        self.queues = QueueControl(self.store, self.settings)
        #: Fleet-wide concurrency and rate limits, set at runtime (PostgreSQL only).
        self.limits = LimitControl(self.store, self.settings)
        self._webhooks: WebhookService | None = None
        # Made here, not on first use: threads of a blocking app racing to make it
        # would each start a hub of their own. It does no I/O until a wait.
        self._wait_hub = WaitHub(self)
        # Last: a plugin's install(app) sees a complete app.
        self._install_plugins(plugins, autoload_plugins)

    @property
    def webhooks(self) -> WebhookService:
        """Signed webhook delivery (:class:`~soniq.webhooks.WebhookService`), made on
        first use. It registers the delivery job ``soniq.webhooks.deliver``."""
        if self._webhooks is None:
            # Imported here: processes that never send webhooks don't pay for it.
            from soniq.webhooks.service import WebhookService

            self._webhooks = WebhookService(self, self._write_jobs_on)
        return self._webhooks

    def _serve_builtin_jobs(self) -> None:
        """Register Soniq's own jobs (webhook delivery) before a worker starts."""
        _ = self.webhooks

    # -- lifecycle ------------------------------------------------------------------

    @property
    def backend(self) -> StorageBackend:
        """Where the jobs live: PostgreSQL (``async with app.backend.acquire() as conn``
        lends a pooled connection), SQLite, or memory. See ``soniq.storage.backend``."""
        runtime = self._runtime
        if runtime.backend is None:
            memory = runtime.memory_store() if runtime.kind == "memory" else None
            runtime.backend = make_backend(runtime.settings, memory)
        return runtime.backend

    @property
    def is_initialized(self) -> bool:
        """Whether the app is connected with its schema checked (``ensure_initialized``
        ran, or an enqueue or inspection did it) and not closed since."""
        return self._runtime.ready

    @property
    def is_closed(self) -> bool:
        """Whether ``close()`` was called and the app not used since. A closed app is
        not dead: its next use reconnects (and this turns False again)."""
        return self._closed and not self._runtime.ready

    async def setup(self, *, create_database: bool = True) -> list[str]:
        """Create or upgrade Soniq's tables; idempotent and safe to run concurrently.

        On PostgreSQL a database the URL names but the server lacks is created first
        (connecting to the server's ``postgres`` database meanwhile), if its name is
        a plain identifier (``[A-Za-z_][A-Za-z0-9_]*``; any other raises
        SONIQ_INVALID_DATABASE_NAME and creates nothing). ``create_database=False``
        raises SONIQ_DATABASE_MISSING instead, with the command to run (what
        ``soniq setup`` does). Plugin migrations (``app.migrations``) are applied after
        Soniq's own, then the plugins' ``on_startup`` run. Returns the migration
        versions applied by this call. The app's settings are frozen from then on,
        until ``close()`` (see ``reconfigure``).
        """
        applied = await self.backend.setup(self.migrations.sources, create_database=create_database)
        self._config.freeze()
        await self._start_plugins()
        return applied

    async def ensure_initialized(self) -> None:
        """Connect and check the schema; later calls return at once.

        The app's settings are frozen from then on, until ``close()`` (see
        ``reconfigure``).
        """
        if self._runtime.ready:
            return
        async with self._init_lock:
            runtime = self._runtime
            if runtime.ready:
                return
            pending = await self.backend.prepare(self.migrations.sources)
            if pending:
                raise schema_missing(pending, "await app.setup()")
            runtime.ready = True
            self._closed = False
            self._config.freeze()
            try:
                await self._start_plugins()
            except BaseException:
                runtime.ready = False  # the next use tries again
                raise

    async def _start_plugins(self) -> None:
        """Run the ``on_startup`` of each plugin not started since the last close, in
        install order; an error propagates (that plugin is tried again next time)."""
        installed = self._config.extensions.plugins
        for plugin in installed.to_start():
            installed.started.append(plugin)  # first: its on_startup may use the app
            hook = getattr(plugin, "on_startup", None)
            if hook is None:
                continue
            try:
                await call_hook(hook, self)
            except BaseException:
                installed.started.remove(plugin)
                raise

    async def _stop_plugins(self) -> None:
        """Run the started plugins' ``on_shutdown`` in reverse order; log their errors."""
        for plugin in self._config.extensions.plugins.to_stop():
            hook = getattr(plugin, "on_shutdown", None)
            if hook is None:
                continue
            try:
                await call_hook(hook, self)
            except Exception:
                logger.warning("plugin %s: on_shutdown failed", plugin.name, exc_info=True)

    async def close(self) -> None:
        """Close Soniq's connections. Safe to call twice; the app reopens on next use.

        First the started plugins' ``on_shutdown`` run, in reverse install order (an
        error there is logged, not raised). Until the app is used again the settings,
        hooks and middleware may change again.
        """
        await self.scheduler.stop()
        await self._stop_waits()
        await self._stop_plugins()
        # Under the init lock: a close landing mid-initialisation would otherwise leave
        # the app marked ready with a pool that is not open.
        async with self._init_lock:
            runtime = self._runtime
            backend, runtime.backend, runtime.ready = runtime.backend, None, False
            self._closed = True
            self._config.thaw()
        if backend is not None:
            await backend.close()

    def _scheduler_runner(self) -> SchedulerRunner:
        """What ``app.scheduler.start()`` runs: the scheduler loop on a task."""
        from soniq.recurring.in_process import InProcessScheduler

        return InProcessScheduler(self)

    async def reconfigure(
        self,
        database_url: str | None = None,
        *,
        enqueue_validation: str | None = None,
        **settings: Any,
    ) -> None:
        """Give the app new settings: keywords as for ``Soniq(...)``, over the ``SONIQ_*``
        environment (settings not given are not carried over from the old ones).

        They are checked first: a bad value raises SoniqError and changes nothing.
        Then the app's connections are closed and it starts afresh on the new
        settings, reconnecting on next use. Registered jobs, hooks and periodic
        declarations are kept; a memory app that stays on memory keeps its jobs.
        This works whether or not the app is in use (assigning ``app.settings`` does
        not, see :mod:`soniq.app_config`).
        """
        fresh = load_settings(database_url, enqueue_validation, settings)
        await self._stop_waits()
        async with self._init_lock:
            old = self._swap_runtime(fresh)
        if old.backend is not None:
            await old.backend.close()

    def worker(self) -> Worker:
        """A :class:`~soniq.worker.Worker` for this app's jobs, hooks and settings.

        The hooks and middleware are frozen from then on, until ``close()``: the
        worker takes them when it starts.
        """
        from soniq.worker import Worker

        self._serve_builtin_jobs()
        self._config.freeze(worker=True)
        return Worker(
            self.backend,
            self.registry,
            self.settings,
            self.hooks,
            self._config.middleware,
            retry_policy=self.retry_policy,
            metrics_sink=self.metrics_sink,
        )

    async def run_worker(
        self,
        concurrency: int | None = None,
        run_once: bool = False,
        queues: list[str] | None = None,
    ) -> bool:
        """Run a worker in this process until stopped (SIGINT/SIGTERM or cancellation).

        With ``run_once`` it processes the jobs runnable now and returns. Returns True
        if any job was processed.
        """
        await self.ensure_initialized()
        return await self.worker().run(
            concurrency=concurrency or self.settings.concurrency, run_once=run_once, queues=queues
        )

    async def __aenter__(self) -> Soniq:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- enqueue --------------------------------------------------------------------

    @overload
    async def enqueue(
        self,
        target: str | TaskRef[Any],
        *,
        args: Mapping[str, Any] | BaseModel | None = None,
        priority: int | None = None,
        queue: str | None = None,
        scheduled_at: datetime | timedelta | float | None = None,
        unique: bool | None = None,
        dedup_key: str | None = None,
        limit_key: str | None = None,
        watch: bool = False,
        connection: Any = None,
    ) -> str: ...
    @overload
    async def enqueue(
        self,
        target: Callable[..., Any],
        *,
        priority: int | None = None,
        queue: str | None = None,
        scheduled_at: datetime | timedelta | float | None = None,
        unique: bool | None = None,
        dedup_key: str | None = None,
        limit_key: str | None = None,
        watch: bool = False,
        connection: Any = None,
        **func_kwargs: Any,
    ) -> str: ...
    async def enqueue(
        self,
        target: Target,
        *,
        args: Mapping[str, Any] | BaseModel | None = None,
        priority: int | None = None,
        queue: str | None = None,
        scheduled_at: datetime | timedelta | float | None = None,
        unique: bool | None = None,
        dedup_key: str | None = None,
        limit_key: str | None = None,
        watch: bool = False,
        connection: Any = None,
        **func_kwargs: Any,
    ) -> str:
        """Queue one job and return its id.

        ``target`` is a ``@app.job()`` function (its arguments as keywords), a task-name
        string or a :class:`TaskRef` (arguments in ``args=``). ``scheduled_at`` is an
        aware datetime, or a ``timedelta`` or seconds from now. With ``connection=``
        the row is written in that connection's open transaction and commits with it.
        ``limit_key`` replaces the key the task's concurrency/rate limits would render.
        ``watch=True`` marks the job watched: its events go out at once for the waiters
        of ``app.handle(job_id)`` (a wait marks a job watched anyway; see the guide).
        """
        plan = self._plan(target, args, func_kwargs, priority, queue, scheduled_at, unique)
        row = plan.row(func_kwargs if plan.by_keywords else args, dedup_key, limit_key=limit_key)
        row.watched = check_watch(watch)
        if self._instruments is None:
            return await self._write(row, connection)
        with self._instruments.enqueuing([row]):
            return await self._write(row, connection)

    async def _write(self, row: JobRow, connection: Any) -> str:
        """Insert one checked row: on the caller's connection, or through the pool."""
        connection = self._current_connection(connection)
        if connection is not None:
            return await _on_callers_connection(connection, lambda a: _insert(self.store, a, row))
        await self.ensure_initialized()
        async with self.store.session() as db:
            return await _insert(self.store, db, row)

    async def _insert_row(self, adapter: AsyncAdapter, row: JobRow) -> str:
        """Write one checked row through ``adapter`` (the scheduler's transaction)."""
        return await _insert(self.store, adapter, row)

    async def schedule(
        self,
        target: Target,
        run_at: datetime | timedelta | float,
        *,
        args: Mapping[str, Any] | BaseModel | None = None,
        priority: int | None = None,
        queue: str | None = None,
        unique: bool | None = None,
        dedup_key: str | None = None,
        limit_key: str | None = None,
        watch: bool = False,
        connection: Any = None,
        **func_kwargs: Any,
    ) -> str:
        """Queue a job to run at ``run_at``: an aware datetime, or seconds from now."""
        return await self.enqueue(
            target,
            args=args,
            priority=priority,
            queue=queue,
            scheduled_at=run_at_to_datetime(run_at),
            unique=unique,
            dedup_key=dedup_key,
            limit_key=limit_key,
            watch=watch,
            connection=connection,
            **func_kwargs,
        )

    async def enqueue_many(
        self,
        target: Target,
        args_list: Iterable[Mapping[str, Any] | BaseModel],
        *,
        priority: int | None = None,
        queue: str | None = None,
        scheduled_at: datetime | timedelta | float | None = None,
        unique: bool | None = None,
        limit_key: str | None = None,
        watch: bool = False,
        connection: Any = None,
    ) -> list[str]:
        """Queue one job per item of ``args_list``; return their ids in the same order.

        All rows are checked before any is written, and they are written by one
        statement (COPY, or a single INSERT when deduplicating), so all or none land.
        An error about a bad item names it: ``details["index"]`` and the message.
        ``watch=True`` marks every job watched (as for ``enqueue``).
        """
        plan = self._plan(target, None, {}, priority, queue, scheduled_at, unique)
        watched = check_watch(watch)
        items = check_args_list(args_list, plan.resolved.name)
        rows = plan_rows(plan, items, new_job_ids(len(items)), limit_key)
        for row in rows if watched else ():
            row.watched = True
        if not rows:
            return []
        if self._instruments is None:
            return await self._write_many(rows, connection)
        with self._instruments.enqueuing(rows):
            return await self._write_many(rows, connection)

    async def _write_many(self, rows: list[JobRow], connection: Any) -> list[str]:
        """Insert checked rows in one statement: on the caller's connection, or the pool's."""
        connection = self._current_connection(connection)
        if connection is not None:
            return await _on_callers_connection(
                connection, lambda a: _insert_many(self.store, a, rows)
            )
        await self.ensure_initialized()
        async with self.store.transaction() as tx:
            return await _insert_many(self.store, tx, rows)

    async def _write_jobs_on(
        self, adapter: AsyncAdapter, target: str, args_list: Iterable[Mapping[str, Any]]
    ) -> list[str]:
        """Insert jobs of a registered task on an open transaction (Soniq's own
        callers, such as ``app.webhooks``, which write other rows in it too)."""
        plan = self._plan(target, None, {}, None, None, None, None)
        items = check_args_list(args_list, plan.resolved.name)
        rows = plan_rows(plan, items, new_job_ids(len(items)))
        return await _insert_many(self.store, adapter, rows) if rows else []

    # -- inspection -----------------------------------------------------------------

    async def get_job(self, job_id: str) -> dict[str, Any] | None:
        """The job's full record, or None. A dead-lettered job has status 'dead_letter'.

        None also for a string that is not a UUID: it names no job.
        """
        key = job_lookup_key(job_id)
        return None if key is None else await self.store.jobs.get(key)

    async def list_jobs(
        self,
        *,
        status: JobStatus | str | None = None,
        queue: str | None = None,
        job_name: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
        before: str | None = None,
    ) -> list[dict[str, Any]]:
        """Job records, newest first, optionally filtered by status, queue and name.

        ``since``/``until`` are aware datetimes on ``created_at`` (since inclusive,
        until exclusive). ``before`` is a job id: only older jobs are listed, so the
        last id of one page gives the next page (keyset paging: no page repeats or
        skips a job while new ones arrive, and a deep page costs what the first does).
        """
        if status is not None:
            try:
                status = JobStatus(status).value
            except ValueError:
                raise SoniqError(
                    INVALID_ARGUMENT,
                    f"status must be one of {', '.join(s.value for s in JobStatus)}, "
                    f"got {status!r}.",
                ) from None
        start, end = time_range(since, until)
        check_page(limit, offset)
        return await self.store.jobs.list(
            before=None if before is None else job_id_param(before),
            status=status,
            queue=queue,
            job_name=job_name,
            since=start,
            until=end,
            limit=limit,
            offset=offset,
        )

    async def cancel_job(self, job_id: str) -> bool:
        """Cancel a job; True if it was cancelled or its cancellation was requested.

        A queued job is cancelled at once. For a running job the request is recorded
        (``cancel_requested_at``) and the worker running it is woken: an async handler
        is interrupted, a sync one can see ``ctx.cancel_requested``. The row ends
        ``cancelled`` when the handler stops, or ``done`` if it finishes anyway. False
        for a finished, cancelled, dead-lettered or unknown job, and for a string that
        is not a UUID. A job whose handler's transaction is completing it right now
        (``ctx.complete``) raises SONIQ_JOB_NOT_CANCELLABLE (``status`` "finishing")
        after 2 s instead of waiting for that transaction.
        """
        key = job_lookup_key(job_id)
        if key is None:
            return False
        try:
            return await self.store.jobs.cancel(key)
        except self.backend.errors as exc:
            if sqlstate(exc) != "55P03":  # lock_not_available
                raise
            raise SoniqError(
                JOB_NOT_CANCELLABLE,
                f"Job {key} is finishing: the transaction of its handler that completes "
                "it (ctx.complete) holds it, and it commits or rolls back on its own. "
                "Look at the job again in a moment.",
                job_id=key,
                status="finishing",
            ) from None

    async def retry_job(self, job_id: str) -> str:
        """Run a job again; return the id of the job that will run.

        A dead-lettered job is replayed (a new job; its id is returned). A cancelled
        job is requeued (same id) with the attempts it had left, and at least one. A
        job waiting out a retry delay becomes due now (same id). Anything else raises
        SONIQ_JOB_NOT_RETRYABLE, or SONIQ_JOB_NOT_FOUND for an id that is nowhere.
        """
        key = job_id_param(job_id)
        try:
            row = await self.store.jobs.retry_now(key)
        except self.backend.duplicate:
            raise SoniqError(
                JOB_NOT_RETRYABLE,
                f"Job {key} can't go back to the queue: another queued job of the same task "
                "has its dedup key. Let that one run, or cancel it first.",
                job_id=key,
                status="cancelled",
            ) from None
        if row is None:
            try:
                return await self.dead_letter.replay(key)
            except SoniqError as exc:
                if exc.code != JOB_NOT_FOUND:
                    raise
                raise SoniqError(
                    JOB_NOT_FOUND,
                    f"No job {key} in soniq_jobs or in the dead-letter queue (it may have "
                    "been deleted). Check the id with list_jobs() or dead_letter.list().",
                    job_id=key,
                ) from None
        if row["requeued"]:
            return key
        raise SoniqError(
            JOB_NOT_RETRYABLE, _not_retryable(key, row), job_id=key, status=row["status"]
        )

    @overload
    async def get_result(self, job_id: str) -> Any: ...
    @overload
    async def get_result(self, job_id: str, *, result_model: type[M]) -> M | None: ...
    async def get_result(self, job_id: str, *, result_model: type[Any] | None = None) -> Any:
        """The return value of a done job, or None: none yet, none at all, or expired
        (or an id string that is not a UUID).

        A result is kept for SONIQ_RESULT_TTL seconds after the job finished. With
        ``result_model`` (a pydantic model, or any type pydantic validates, such as a
        dataclass) the stored JSON comes back validated as that type; a result that
        does not fit raises SONIQ_RESULT_INVALID.
        """
        validate = None if result_model is None else result_validator(result_model)
        key = job_lookup_key(job_id)
        if key is None:
            return None
        _, result = await self.store.jobs.result(key, result_ttl(self.settings))
        if validate is None or result is None:
            return result
        return validate(result, key)

    # -- waiting --------------------------------------------------------------------

    def handle(
        self,
        job_id: str,
        *,
        result_model: type[Any] | None = None,
        ref: TaskRef[Any] | None = None,
    ) -> JobHandle:
        """A :class:`~soniq.waiting.JobHandle` to wait for the job's outcome; no I/O.

        ``await handle.wait(timeout=30)`` gives its outcome, ``await
        handle.result(...)`` its result (or raises JobFailed, JobCancelled, JobGone,
        TimeoutError), ``async for event in handle.events()`` its steps. With
        ``result_model`` the result comes back validated as that type (see
        ``get_result``); ``ref``, a :func:`task_ref` declared with ``result_model=``,
        gives its model instead. A string that is not a UUID raises
        SONIQ_INVALID_JOB_ID.
        """
        if result_model is None and ref is not None:
            result_model = ref.result_model
        validate = None if result_model is None else result_validator(result_model)
        return JobHandle(self._waits(), job_id_param(job_id), validate)

    async def wait_many(
        self,
        job_ids: Iterable[str],
        timeout: float | None = None,
        *,
        return_when: str = "all",
        allow_in_handler: bool = False,
    ) -> dict[str, JobOutcome]:
        """Wait for several jobs: ``return_when="all"`` (every one ended) or
        ``"first"`` (at least one). Their outcomes by id, in the order given (for
        ``"first"``, those that had ended). TimeoutError after ``timeout`` seconds
        (the jobs go on); JobGone if one of them is gone (see ``handle.wait``).
        """
        if isinstance(job_ids, (str, bytes)):
            raise SoniqError(
                INVALID_ARGUMENT,
                "wait_many() takes a list of job ids; for one job use app.handle(job_id).",
            )
        keys = list(dict.fromkeys(job_id_param(job_id) for job_id in job_ids))
        first = check_return_when(return_when)
        limit = check_wait(timeout, allow_in_handler, "app.wait_many()")
        if not keys:
            return {}
        states = await self._waits().wait(keys, limit, first)
        return {key: outcome_of(states[key], key) for key in keys if key in states}

    def _waits(self) -> WaitHub:
        """The app's one hub of waits (it starts with the first wait)."""
        return self._wait_hub

    async def _stop_waits(self) -> None:
        """Stop the hub (its connections); pending waits fail. The next wait starts it
        again, on the settings then in force."""
        await self._wait_hub.close()

    async def delete_job(self, job_id: str) -> bool:
        """Delete a job row whatever its status; True if one was deleted (False also for
        a string that is not a UUID)."""
        key = job_lookup_key(job_id)
        return False if key is None else await self.store.jobs.delete(key)

    async def get_queue_stats(self) -> dict[str, int]:
        """Counts over all queues: ``total``, ``queued``, ``processing``, ``done``,
        ``dead_letter`` and ``cancelled``; ``total`` is the sum of the other five.

        For one dict per queue, see :meth:`get_queue_stats_by_queue`.
        """
        counts = await self.store.jobs.queue_totals()
        stats = {key: int(counts[key]) for key in _STAT_KEYS}
        return {"total": sum(stats.values()), **stats}

    async def get_queue_stats_by_queue(self) -> list[dict[str, Any]]:
        """The same counts per queue: one dict per queue (key ``queue``), sorted by
        queue name; queues without any job or dead letter are left out."""
        stats = await self.store.jobs.queue_stats()
        for row in stats:
            row["total"] = sum(row[k] for k in _STAT_KEYS)
        return stats

    async def status(self) -> dict[str, Any]:
        """What the queues hold and who serves them, for dashboards and ``soniq status``.

        ``queues`` has one dict per queue (see the API reference for the keys);
        ``workers`` counts the workers heard from within SONIQ_HEARTBEAT_TIMEOUT and
        ``stale_workers`` the others; ``paused_queues`` lists the pauses in force
        (``name``, ``paused``, ``paused_at``, ``paused_until``, ``reason``,
        ``paused_by``); ``limit_groups`` the concurrency and rate limit groups, as
        ``app.limits.list()`` gives them (without keys; ``[]`` on SQLite and memory);
        ``limited_queues`` the queues with limits of their own (``name``,
        ``concurrency``, ``rate_limit``, ``rate_period``, ``burst``);
        ``queue_index`` whether the index by queue is there (``app.queues.add_index``;
        False on SQLite and memory).
        """
        queues = await self.store.jobs.queue_status()
        workers = await self.list_workers()
        live = sum(1 for w in workers if not w["stale"])
        paused = [info.as_dict() for info in await self.queues.paused()]
        for pause in paused:
            del pause["queued"], pause["processing"]
        limits = [info.as_dict() for info in await self.limits.in_use()]
        for group in limits:
            del group["keys"]
        limited = [
            {
                k: info.as_dict()[k]
                for k in ("name", "concurrency", "rate_limit", "rate_period", "burst")
            }
            for info in await self.queues.limited()
        ]
        indexed = storage_kind(self.settings) == "postgres" and await self.queues.has_index()
        return {
            "queues": queues,
            "workers": live,
            "stale_workers": len(workers) - live,
            "paused_queues": paused,
            "limit_groups": limits,
            "limited_queues": limited,
            "queue_index": indexed,
        }

    async def list_workers(self) -> list[dict[str, Any]]:
        """Every row of ``soniq_workers``, oldest first, with heartbeat age and jobs held.

        ``stale`` is True for a worker silent for longer than SONIQ_HEARTBEAT_TIMEOUT.
        """
        return await self.store.workers.list(self.settings.heartbeat_timeout)

    async def unregistered_tasks(self) -> list[dict[str, Any]]:
        """Task names that queued, running or dead-lettered jobs use but this app does
        not register, each with its ``queued``, ``processing`` and ``dead_letter``
        counts, sorted by name. Empty when every job has a handler here."""
        rows = await self.store.jobs.task_names_in_use()
        # Soniq's own jobs are served by every worker, registered here or not.
        return [
            row
            for row in rows
            if row["job_name"] not in self.registry and not is_builtin_task(row["job_name"])
        ]

    async def migration_status(self) -> dict[str, Any]:
        """The schema's migrations: ``applied`` (version and time), ``pending`` versions,
        and ``unknown`` versions applied by a newer Soniq than this one.

        Works on a database where ``setup`` never ran (everything is pending).
        """
        return await self.backend.migration_status(self.migrations.sources)

    async def prune(self, older_than: float | timedelta | None = None) -> int:
        """Delete finished (done and cancelled) jobs now; return how many were deleted.

        ``older_than`` (seconds or a timedelta since they finished) defaults to
        SONIQ_FINISHED_JOB_RETENTION. Jobs whose result is younger than
        SONIQ_RESULT_TTL are kept either way. Deletes in batches, oldest first.
        """
        age = prune_age(self.settings, older_than)
        await self.ensure_initialized()
        return await prune_finished(self.store, age)


def _not_retryable(job_id: str, row: Mapping[str, Any]) -> str:
    """Why ``retry_job`` left a job alone, and what to do instead."""
    status = row["status"]
    if status == "done":
        return (
            f"Job {job_id} finished successfully; there is nothing to retry. Enqueue a new "
            "job to run it again."
        )
    if status == "processing":
        return (
            f"Job {job_id} is running now (attempt {row['attempts']}). Wait for it to end, "
            "or cancel it with cancel_job() and retry it once it is cancelled."
        )
    return (
        f"Job {job_id} is queued and has not failed yet; it runs when due "
        f"({row['scheduled_at'].isoformat()}). There is nothing to retry."
    )


async def _insert(store: Store, adapter: AsyncAdapter, row: JobRow) -> str:
    """Insert one row; with a dedup key already queued, return that job's id instead."""
    params = row.params()
    if row.dedup_key is None:
        await store.jobs.insert(adapter, params)
        return row.id
    for _ in range(_DEDUP_ATTEMPTS):
        inserted = await store.jobs.insert_unique(adapter, params)
        if inserted is not None:
            return inserted
        existing = await store.jobs.queued_duplicate(adapter, params)
        if existing is not None:
            return existing
    raise SoniqError(
        ENQUEUE_CONFLICT,
        f"Could not enqueue {row.job_name!r} with dedup key {row.dedup_key!r}: a duplicate "
        "kept appearing and leaving the queue. Retry the call.",
    )


async def _insert_many(store: Store, adapter: AsyncAdapter, rows: list[JobRow]) -> list[str]:
    """Write a batch in one statement (COPY without dedup keys or headers); ids in order."""
    first = rows[0]
    # COPY writes the columns every row shares; limited rows each have their own key.
    # Watched rows take the INSERT too, so that COPY (the common batch) stays as it was.
    plain = first.dedup_key is None and first.headers is None and first.limit_key is None
    if plain and not first.watched:
        shared: tuple[object, ...] = (
            first.job_name,
            first.queue,
            first.priority,
            first.max_attempts,
            first.producer_id,
        )
        if first.scheduled_at is not None:
            shared += (first.scheduled_at, first.scheduled_at > datetime.now(timezone.utc))
        await store.jobs.copy(adapter, [r.id for r in rows], [r.args_json for r in rows], shared)
        ids = [row.id for row in rows]
    else:
        ids = await _insert_rows(store, adapter, rows)
    await store.jobs.notify(adapter, first.queue, first.scheduled_at)
    return ids


async def _insert_rows(store: Store, adapter: AsyncAdapter, rows: list[JobRow]) -> list[str]:
    """The batch in one INSERT, which (unlike COPY) skips queued duplicates and writes
    headers; a row whose duplicate left the queue meanwhile is inserted on its own."""
    params = {
        **rows[0].params(),
        "ids": [r.id for r in rows],
        "args": [r.args_json for r in rows],
        "dedup_keys": [r.dedup_key for r in rows],
        "limit_keys": [r.limit_key for r in rows],
    }
    inserted = await store.jobs.insert_many(adapter, params)
    skipped = [r.dedup_key for r in rows if r.id not in inserted]
    found: dict[str, str] = {}
    if skipped:
        found = await store.jobs.queued_duplicates(adapter, rows[0].job_name, skipped)
    ids = []
    for row in rows:
        if row.id in inserted:
            ids.append(row.id)
        elif row.dedup_key in found:
            ids.append(found[row.dedup_key])
        else:  # its duplicate left the queue in between: insert it on its own
            ids.append(await _insert(store, adapter, row))
    return ids


async def _on_callers_connection(
    connection: object, write: Callable[[AsyncAdapter], Awaitable[T]]
) -> T:
    """Run ``write`` on the caller's connection; a missing table is SONIQ_SCHEMA_MISSING."""
    adapter = async_adapter(connection)
    try:
        return await write(adapter)
    except Exception as exc:
        if sqlstate(exc) != "42P01":  # undefined_table
            raise
        raise SoniqError(
            SCHEMA_MISSING,
            "Soniq's tables are not in the database behind connection=. Run "
            "`soniq setup` against it first.",
        ) from exc
