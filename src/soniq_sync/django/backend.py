"""A backend for Django's tasks framework that stores tasks as Soniq jobs.

``TASKS = {"default": {"BACKEND": "soniq_sync.django.backend.SoniqBackend"}}``.
``@task`` functions are enqueued into ``soniq_jobs`` (inside ``transaction.atomic()``
through Django's connection, so they commit or roll back with it) and run by
``soniq worker`` with ``SONIQ_JOBS_MODULES=soniq_sync.django.worker``.

How a task maps onto a job:

* job name: the task function's module path (``myapp.tasks.send_receipt``). Each
  task is registered as a Soniq job when it is declared, in every process that
  imports it; the handler calls the task function.
* args: ``{"args": [...], "kwargs": {...}}`` as JSON, so positional arguments work.
* priority: Django's -100..100 (higher runs sooner) becomes Soniq's ``101 - priority``
  (1..201, lower runs sooner); Django's default 0 is Soniq's 101.
* ``queue_name`` is the queue, ``run_after`` the job's ``scheduled_at``.
* retries: ``OPTIONS["MAX_RETRIES"]``, else ``SONIQ["MAX_RETRIES"]`` (Soniq's default, 3).
* signals: ``task_enqueued`` when enqueued; ``task_started`` and ``task_finished``
  around each attempt, in the worker (see :func:`run_task`).
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import traceback
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from soniq.enqueue.naming import derive_task_name
from soniq.errors import (
    INVALID_JOB_ID,
    INVALID_JOB_OPTION,
    INVALID_SETTING,
    JOB_NOT_FOUND,
    ArgsNotSerializableError,
    SoniqError,
)
from soniq.ops.filters import job_id_param
from soniq.settings import SoniqSettings
from soniq.types import JobContext
from soniq_sync.django._compat import (
    BaseTaskBackend,
    InvalidTask,
    Task,
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    normalize_json,
    task_enqueued,
    task_finished,
    task_started,
)

#: Keys of a backend's ``OPTIONS``.
OPTION_KEYS = ("MAX_RETRIES",)

DJANGO_MIN_PRIORITY = -100
DJANGO_MAX_PRIORITY = 100


class InvalidSoniqTask(SoniqError, InvalidTask):  # type: ignore[misc]
    """A task the backend cannot run: Django's ``InvalidTask`` with a Soniq code."""


class SoniqTaskResultDoesNotExist(SoniqError, TaskResultDoesNotExist):  # type: ignore[misc]
    """No task result with that id: Django's ``TaskResultDoesNotExist`` with a Soniq code."""


def to_soniq_priority(priority: int) -> int:
    """Django's priority (-100..100, higher first) as Soniq's (1..201, lower first)."""
    return DJANGO_MAX_PRIORITY + 1 - priority


def to_django_priority(priority: int) -> int:
    """Soniq's priority as Django's, clamped to Django's range."""
    return max(DJANGO_MIN_PRIORITY, min(DJANGO_MAX_PRIORITY, DJANGO_MAX_PRIORITY + 1 - priority))


class SoniqBackend(BaseTaskBackend):  # type: ignore[misc]
    """Django tasks as Soniq jobs: deferrable, prioritised, async-capable, with results."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        options = self.options
        if not isinstance(options, Mapping):
            raise SoniqError(
                INVALID_SETTING,
                f"TASKS[{alias!r}]['OPTIONS'] must be a dict, got {type(options).__name__}.",
                setting=f"TASKS[{alias!r}]['OPTIONS']",
            )
        unknown = sorted(str(key) for key in options if key not in OPTION_KEYS)
        if unknown:
            raise SoniqError(
                INVALID_SETTING,
                f"TASKS[{alias!r}]['OPTIONS'] has an unknown key {unknown[0]!r}. Known keys: "
                f"{', '.join(OPTION_KEYS)}; Soniq's own settings go in settings.SONIQ.",
                setting=f"TASKS[{alias!r}]['OPTIONS'][{unknown[0]!r}]",
            )
        retries = options.get("MAX_RETRIES")
        if retries is not None and (
            not isinstance(retries, int) or isinstance(retries, bool) or retries < 0
        ):
            raise SoniqError(
                INVALID_SETTING,
                f"TASKS[{alias!r}]['OPTIONS']['MAX_RETRIES'] must be an int >= 0, got {retries!r}.",
                setting=f"TASKS[{alias!r}]['OPTIONS']['MAX_RETRIES']",
            )
        self.max_retries: int | None = retries

    # -- declaring and enqueueing ---------------------------------------------------

    def validate_task(self, task: Task) -> None:
        """Django's checks (as SONIQ_INVALID_JOB_OPTION), then register the task's job."""
        try:
            super().validate_task(task)
        except InvalidTask as exc:
            if isinstance(exc, SoniqError):
                raise
            raise InvalidSoniqTask(
                INVALID_JOB_OPTION,
                f"Task {_path(task)}: {exc} Fix the @task declaration or its .using() call.",
                task_name=_path(task),
            ) from exc
        self._register(task)

    def enqueue(self, task: Task, args: Sequence[Any], kwargs: Mapping[str, Any]) -> TaskResult:
        """Write the task's job (in the open atomic block, if any); return its READY result.

        The result is what :meth:`get_result` reads back: the arguments as stored
        (JSON) and ``enqueued_at`` as the row's ``created_at``.
        """
        import soniq_sync

        self.validate_task(task)
        name = derive_task_name(task.func)
        call_args, call_kwargs = _stored_arguments(name, args, kwargs)
        app = soniq_sync.default_app()
        job_id = app.enqueue(
            name,
            args={"args": call_args, "kwargs": call_kwargs},
            priority=to_soniq_priority(task.priority),
            queue=task.queue_name,
            scheduled_at=_aware(task.run_after),
        )
        result = TaskResult(
            task=task,
            id=job_id,
            status=TaskResultStatus.READY,
            enqueued_at=_enqueued_at(app, job_id),
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=call_args,
            kwargs=call_kwargs,
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        task_enqueued.send(type(self), task_result=result)
        return result

    # -- results --------------------------------------------------------------------

    def get_result(self, result_id: str) -> TaskResult:
        """The task's current state, read from Soniq's tables.

        queued is READY (also between retries), processing is RUNNING, done is
        SUCCESSFUL, and dead-lettered or cancelled is FAILED.
        """
        import soniq_sync

        app = soniq_sync.default_app()
        # app.get_job answers None for a string that is not a UUID; Django callers are
        # told the id is malformed instead.
        try:
            job = app.get_job(job_id_param(result_id))
        except SoniqError as exc:
            if exc.code != INVALID_JOB_ID:
                raise
            raise SoniqTaskResultDoesNotExist(
                INVALID_JOB_ID, f"{result_id!r} is not a task result id; ids are UUID strings."
            ) from None
        if job is None:
            raise SoniqTaskResultDoesNotExist(
                JOB_NOT_FOUND,
                f"No task result {result_id!r}: no such job in Soniq's tables (finished jobs "
                "are deleted after SONIQ['RESULT_TTL'] seconds).",
                job_id=result_id,
            )
        task = self._task_of(job)
        call = job["args"] if isinstance(job["args"], Mapping) else {}
        status = job["status"]
        errors: list[Any] = []
        if status == "dead_letter":
            record = app.dead_letter.get(result_id) or {}
            text = record.get("traceback") or job.get("last_error") or job.get("reason") or ""
            errors.append(_task_error(text))
        elif job.get("last_error"):
            errors.append(_task_error(job["last_error"]))
        attempts = int(job.get("attempts") or 0)
        result = TaskResult(
            task=task,
            id=job["id"],
            status=_STATUS[status],
            enqueued_at=job.get("created_at"),
            started_at=job.get("started_at"),
            finished_at=job.get("finished_at"),
            last_attempted_at=job.get("started_at"),
            args=list(call.get("args") or []),
            kwargs=dict(call.get("kwargs") or {}),
            backend=self.alias,
            errors=errors,
            worker_ids=[job.get("worker_id") or ""] * attempts,
        )
        if status == "done":
            object.__setattr__(result, "_return_value", job.get("result"))
        return result

    # -- internals ------------------------------------------------------------------

    def _register(self, task: Task) -> None:
        """Register ``task`` as a Soniq job on the default app (once per function)."""
        import soniq_sync

        app = soniq_sync.default_app()
        spec = app.registry.get(derive_task_name(task.func))
        if spec is not None and getattr(spec.func, "django_task_func", None) is task.func:
            return
        app.job(retries=self._retries())(_handler_for(task))

    def _retries(self) -> int:
        if self.max_retries is not None:
            return self.max_retries
        from django.conf import settings

        configured = getattr(settings, "SONIQ", None)
        if isinstance(configured, Mapping) and "MAX_RETRIES" in configured:
            return SoniqSettings.load(max_retries=configured["MAX_RETRIES"]).max_retries
        return SoniqSettings.load().max_retries

    def _task_of(self, job: Mapping[str, Any]) -> Task:
        """The ``Task`` a job was enqueued from, with the job's queue and priority."""
        from django.utils.module_loading import import_string

        name = job["job_name"]
        try:
            task = import_string(name)
        except ImportError:
            task = None
        call = job.get("args")
        if not isinstance(task, Task) or not (
            isinstance(call, Mapping) and set(call) == {"args", "kwargs"}
        ):
            raise SoniqTaskResultDoesNotExist(
                JOB_NOT_FOUND,
                f"Job {job['id']} ({name!r}) is not a Django task this process can import, "
                "so it has no task result. Read it with soniq_sync.default_app().get_job().",
                job_id=job["id"],
                task_name=name,
            )
        changes: dict[str, Any] = {
            "priority": to_django_priority(job["priority"]),
            "queue_name": job["queue"],
            "backend": self.alias,
        }
        # A job enqueued without run_after is due at its enqueue time; any other
        # scheduled_at is the run_after it was given (or, after a failed attempt, the
        # time its retry is due: the earliest it will run, as run_after means).
        scheduled_at = job.get("scheduled_at")
        if scheduled_at is not None and scheduled_at != job.get("created_at"):
            changes["run_after"] = scheduled_at
        try:
            return dataclasses.replace(task, **changes)
        except InvalidTask:  # e.g. QUEUES changed since: report the task as declared
            return task


_STATUS = {
    "queued": TaskResultStatus.READY,
    "processing": TaskResultStatus.RUNNING,
    "done": TaskResultStatus.SUCCESSFUL,
    "cancelled": TaskResultStatus.FAILED,
    "dead_letter": TaskResultStatus.FAILED,
}


def _handler_for(task: Task) -> Callable[..., Any]:
    """The Soniq job that runs ``task``: named (and so registered) like the task function."""
    func = task.func

    def run(context: JobContext, args: list[Any], kwargs: dict[str, Any]) -> Any:
        return run_task(task, context, args, kwargs)

    run.__module__ = func.__module__
    run.__qualname__ = func.__qualname__
    run.__name__ = func.__name__
    run.__doc__ = f"Runs the Django task {_path(task)}."
    run.django_task_func = func  # type: ignore[attr-defined]
    return run


def run_task(task: Task, context: JobContext, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """Run one attempt of ``task`` in a worker thread; return its JSON-ready value.

    Sends Django's ``task_started`` and ``task_finished`` around it, as Django's own
    backends do; the sender is the backend's class and ``task_result`` the attempt's
    result. At ``task_started`` it is RUNNING, as :meth:`SoniqBackend.get_result`
    reads it (``started_at`` and ``last_attempted_at`` are this attempt's start). At
    ``task_finished`` it is SUCCESSFUL with the return value, or, when the task
    raised, carries the new error and is FAILED if this was the last attempt (or its
    cancellation was requested), else READY: the job goes back to the queue for its
    retry. A failure's ``task_finished`` is sent while the exception is handled, so
    receivers see it in ``sys.exc_info()``; the exception then propagates to the
    worker, which retries or dead-letters the job.

    Stale database connections are closed before and after, as Django does around a
    request, since worker threads live much longer than one task.
    """
    from django.db import close_old_connections

    backend = task.get_backend()
    sender = type(backend)
    close_old_connections()
    try:
        result = backend.get_result(context.job_id)
        try:
            task_started.send(sender=sender, task_result=result)
            if task.takes_context:
                value = task.call(TaskContext(task_result=result), *args, **kwargs)
            else:
                value = task.call(*args, **kwargs)
            value = _json_value(task, value)
        except BaseException as exc:
            _failed(
                result,
                exc,
                last=context.attempt >= context.max_attempts or context.cancel_requested,
            )
            task_finished.send(sender=sender, task_result=result)
            raise
        _finished(result, TaskResultStatus.SUCCESSFUL)
        object.__setattr__(result, "_return_value", value)
        task_finished.send(sender=sender, task_result=result)
        return value
    finally:
        close_old_connections()


def _json_value(task: Task, value: Any) -> Any:
    """The task's return value as its stored result, or a TypeError that says why not."""
    try:
        return normalize_json(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"Task {_path(task)} returned a {type(value).__name__}, which cannot be "
            f"stored as its result ({exc}). Return JSON-compatible values."
        ) from exc


def _finished(result: Any, status: Any) -> None:
    """Mark the attempt's result ``status`` (SUCCESSFUL or FAILED), finished now."""
    from django.utils import timezone

    object.__setattr__(result, "status", status)
    object.__setattr__(result, "finished_at", timezone.now())


def _failed(result: Any, exc: BaseException, *, last: bool) -> None:
    """Add ``exc`` to the attempt's errors; FAILED on the last attempt, else READY."""
    kind = type(exc)
    result.errors.append(
        TaskError(
            exception_class_path=f"{kind.__module__}.{kind.__qualname__}",
            traceback="".join(traceback.format_exception(kind, exc, exc.__traceback__)),
        )
    )
    if last:
        _finished(result, TaskResultStatus.FAILED)
    else:
        object.__setattr__(result, "status", TaskResultStatus.READY)


def _task_error(text: str) -> Any:
    """A TaskError from a traceback (or Soniq's one-line ``Type: message`` error)."""
    last = text.strip().splitlines()[-1] if text.strip() else ""
    name = last.split(":", 1)[0].strip() if ":" in last else ""
    if name and "." not in name and isinstance(getattr(builtins, name, None), type):
        name = f"builtins.{name}"
    return TaskError(exception_class_path=name or "builtins.Exception", traceback=text)


def _stored_arguments(
    name: str, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> tuple[list[Any], dict[str, Any]]:
    """The arguments as the job stores them, checked before anything is written.

    Normalised as Django's ``TaskResult`` does (tuples are lists, bytes are UTF-8
    text), then through JSON (dict keys become strings), so the enqueued result and a
    later ``get_result`` hold the same values. The first argument that JSON cannot
    carry raises ArgsNotSerializableError: a SoniqError, and the TypeError Django's
    contract asks for.
    """
    values = [(f"positional argument {i}", v) for i, v in enumerate(args)]
    values += [(f"argument {k!r}", v) for k, v in kwargs.items()]
    for label, value in values:
        try:
            json.dumps(normalize_json(value), allow_nan=False)
        except (TypeError, ValueError):
            raise ArgsNotSerializableError(
                f"Task {name}: {label} ({value!r}, a {type(value).__name__}) is not JSON. "
                "Pass JSON-compatible values (e.g. str(uuid), dt.isoformat(), an id "
                "instead of a model instance).",
                task_name=name,
            ) from None
    stored = json.loads(json.dumps(normalize_json({"args": list(args), "kwargs": dict(kwargs)})))
    return stored["args"], stored["kwargs"]


def _enqueued_at(app: Any, job_id: str) -> datetime:
    """The ``created_at`` of the job just written, read where it was written.

    Inside ``transaction.atomic()`` the row is on Django's connection and uncommitted,
    so only that connection can see it; otherwise it is committed, in Soniq's store.
    The server's clock (the transaction's start, in PostgreSQL) set it, so it cannot
    be worked out here.
    """
    from django.utils import timezone

    from soniq_sync.adapters import sync_adapter

    connection = app._current_connection(None)
    adapter = None if connection is None else sync_adapter(connection)
    value = app.store.jobs.created_at(adapter, job_id)
    if timezone.is_naive(value):  # Django's connection with USE_TZ = False
        value = timezone.make_aware(value, timezone.get_default_timezone())
    created: datetime = value
    return created


def _aware(run_after: datetime | None) -> datetime | None:
    """``run_after`` as an aware datetime (naive ones are in Django's time zone)."""
    if run_after is None:
        return None
    from django.utils import timezone

    if timezone.is_naive(run_after):
        aware: datetime = timezone.make_aware(run_after, timezone.get_default_timezone())
        return aware
    return run_after


def _path(task: Task) -> str:
    func = getattr(task, "func", None)
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', '?')}"
