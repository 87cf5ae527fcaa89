"""What the async ``soniq.Soniq`` and the blocking ``soniq_sync.Soniq`` share.

Settings, the job registry, hooks and the checks of an enqueue call do no I/O, so they
are written once here; only the methods that talk to PostgreSQL differ between the two
apps (and the blocking ones are generated from the async ones).
"""

from __future__ import annotations

import itertools
import uuid
import weakref
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel

from soniq.enqueue import JobPlan, UnknownNameWarner, normalise_args, plan_job
from soniq.errors import (
    INVALID_ARGUMENT,
    INVALID_JOB_ID,
    INVALID_JOB_OPTION,
    INVALID_TARGET,
    INVALID_TASK_NAME,
    BackendUnsupportedError,
    SoniqError,
)
from soniq.instruments import EnqueueInstruments, enqueue_instruments
from soniq.recurrence import PeriodicJob, PlannedSchedule, recurrence
from soniq.registry import JobRegistry, JobSpec, RetryDelay, build_spec
from soniq.settings import SoniqSettings
from soniq.storage.urls import normalise_database_url, storage_kind
from soniq.task_ref import TaskRef

F = TypeVar("F", bound=Callable[..., Any])
Hook = Callable[..., Any]

#: Finds the connection of a transaction the caller is in, if any (e.g. Django's
#: inside ``transaction.atomic()``); ``enqueue`` without ``connection=`` writes there.
ConnectionProvider = Callable[[], object | None]

# Every app created in this process, async or blocking, by creation order;
# `soniq worker` finds the jobs modules' apps here.
INSTANCES: weakref.WeakValueDictionary[int, AppBase] = weakref.WeakValueDictionary()
_SERIAL = itertools.count()


class AppBase:
    """Settings, registrations and hooks of one Soniq app; no I/O.

    ``database_url`` and any setting of :class:`~soniq.settings.SoniqSettings` may be
    given as keywords; they override the ``SONIQ_*`` environment.
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        enqueue_validation: str | None = None,
        **settings: Any,
    ) -> None:
        if database_url is not None:
            settings["database_url"] = database_url
        if enqueue_validation is not None:
            settings["enqueue_validation"] = enqueue_validation
        self.settings = SoniqSettings.load(**settings)
        # Fail now, not at first use, on a URL that can never work.
        if storage_kind(self.settings) == "postgres" and self.settings.database_url is not None:
            normalise_database_url(self.settings.database_url)
        self.registry = JobRegistry()
        self.hooks: dict[str, list[Hook]] = {"before_job": [], "after_job": [], "on_error": []}
        #: Consulted by ``enqueue`` calls without ``connection=``; see ConnectionProvider.
        self.connection_provider: ConnectionProvider | None = None
        self._warner = UnknownNameWarner()
        self._plans: dict[tuple[object, ...], JobPlan] = {}
        self._plans_settings = self.settings  # the settings the cached plans were made with
        #: Metrics and tracing of enqueues; None when both are off (the usual case).
        self._instruments: EnqueueInstruments | None = enqueue_instruments(self.settings)
        #: Schedules declared by ``@app.periodic``, by task name.
        self.periodic_jobs: dict[str, PeriodicJob] = {}
        # The in-memory backend's database, made on first use. Held here, not by the
        # backend, so that the async twin of a blocking app (which runs its worker)
        # shares it; see soniq.app.async_twin.
        self._memory: dict[str, Any] = {}
        INSTANCES[next(_SERIAL)] = self

    # -- registration ---------------------------------------------------------------

    def job(
        self,
        _func: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        retries: int | None = None,
        max_retries: int | None = None,
        priority: int | None = None,
        queue: str | None = None,
        unique: bool = False,
        retry_delay: RetryDelay = 0,
        retry_backoff: bool = False,
        retry_max_delay: float | None = None,
        timeout: float | None = None,
        validate: type[BaseModel] | None = None,
        args_model: type[BaseModel] | None = None,
    ) -> Callable[[F], F]:
        """Register the decorated function as a job. Always call it: ``@app.job()``.

        Without ``queue=``, jobs go to a TaskRef's ``default_queue`` when enqueued
        through one, else to ``"default"``.
        """
        make_spec = self._spec_maker(
            _func,
            "job()",
            name=name,
            retries=retries,
            max_retries=max_retries,
            priority=priority,
            queue=queue,
            unique=unique,
            retry_delay=retry_delay,
            retry_backoff=retry_backoff,
            retry_max_delay=retry_max_delay,
            timeout=timeout,
            validate=validate,
            args_model=args_model,
        )

        def register(func: F) -> F:
            self.registry.add(make_spec(func))
            return func

        return register

    def periodic(
        self,
        _func: Callable[..., Any] | None = None,
        *,
        cron: object = None,
        every: timedelta | float | None = None,
        timezone: str | None = None,
        catch_up: bool = False,
        **job_kwargs: Any,
    ) -> Callable[[F], F]:
        """Register a job that ``soniq scheduler`` runs on a schedule.

        Exactly one of ``cron=`` (a 5-field cron string or a ``soniq.schedules``
        builder, evaluated in ``timezone``, UTC by default) and ``every=`` (a
        ``timedelta`` or seconds). ``catch_up=True`` makes the scheduler enqueue every
        run missed while no scheduler was up, instead of skipping them. Any other
        keyword is an ``@app.job()`` option. The handler is called without arguments.
        """
        if _func is not None:
            self._spec_maker(_func, "periodic(cron=...)")
        rule = recurrence(cron, every, timezone)
        if not isinstance(catch_up, bool):
            raise SoniqError(
                INVALID_JOB_OPTION, f"catch_up= must be True or False, got {catch_up!r}."
            )
        unknown = sorted(set(job_kwargs) - _JOB_OPTIONS)
        if unknown:
            raise SoniqError(
                INVALID_JOB_OPTION,
                f"@app.periodic got an unknown option {unknown[0]!r}. It takes cron=, every=, "
                "timezone=, catch_up= and the options of @app.job(): "
                f"{', '.join(sorted(_JOB_OPTIONS))}.",
            )
        make_spec = self._spec_maker(None, "periodic()", **job_kwargs)

        def register(func: F) -> F:
            spec = make_spec(func)
            if spec.required_args:
                raise SoniqError(
                    INVALID_JOB_OPTION,
                    f"Periodic job {spec.name!r} is called without arguments, but "
                    f"{func.__qualname__}{spec.signature} requires "
                    f"{', '.join(sorted(spec.required_args))}. Give them defaults.",
                    task_name=spec.name,
                )
            self.registry.add(spec)
            self.periodic_jobs[spec.name] = PeriodicJob(spec.name, rule, catch_up)
            return func

        return register

    def _spec_maker(
        self,
        _func: Callable[..., Any] | None,
        decorator: str,
        *,
        name: str | None = None,
        retries: int | None = None,
        max_retries: int | None = None,
        priority: int | None = None,
        queue: str | None = None,
        unique: bool = False,
        retry_delay: RetryDelay = 0,
        retry_backoff: bool = False,
        retry_max_delay: float | None = None,
        timeout: float | None = None,
        validate: type[BaseModel] | None = None,
        args_model: type[BaseModel] | None = None,
    ) -> Callable[[Callable[..., Any]], JobSpec]:
        """Check the options of ``@app.job()`` now; build a function's spec later."""
        if _func is not None:
            raise SoniqError(
                INVALID_JOB_OPTION,
                f"@app.{decorator.split('(')[0]} must be called: write @app.{decorator} (with "
                f"parentheses), above {getattr(_func, '__qualname__', _func)!r}.",
            )
        retries = _one_of("retries", retries, "max_retries", max_retries)
        model = _one_of("validate", validate, "args_model", args_model)

        def make_spec(func: Callable[..., Any]) -> JobSpec:
            return build_spec(
                func,
                name=name,
                retries=self.settings.max_retries if retries is None else retries,
                priority=self.settings.priority if priority is None else priority,
                queue=queue,
                unique=unique,
                retry_delay=retry_delay,
                retry_backoff=retry_backoff,
                retry_max_delay=retry_max_delay,
                timeout=timeout,
                args_model=model,
                name_pattern=self.settings.task_name_pattern,
            )

        return make_spec

    def _plan_schedule(
        self,
        target: object,
        *,
        name: object,
        cron: object,
        every: object,
        timezone: object,
        args: object,
        queue: object,
        priority: object,
        catch_up: object,
    ) -> PlannedSchedule:
        """Check an ``app.scheduler.add(...)`` call completely, before any I/O."""
        if target is None and name is None:
            raise SoniqError(
                INVALID_TARGET,
                "scheduler.add() needs a target: a @app.job() function, a task-name string, "
                "a TaskRef, or name='task.name'.",
            )
        if name is not None and not isinstance(name, str):
            raise SoniqError(INVALID_TASK_NAME, f"name= must be a task-name string, got {name!r}.")
        rule = recurrence(cron, every, timezone)
        if not isinstance(catch_up, bool):
            raise SoniqError(
                INVALID_ARGUMENT, f"catch_up= must be True or False, got {catch_up!r}."
            )
        by_name = target is None or isinstance(target, (str, TaskRef))
        call_args = normalise_args(args, str(name or target))
        plan = self._plan(
            name if target is None else target,
            call_args if by_name else None,
            {} if by_name else call_args,
            priority,
            queue,
            None,
            None,
        )
        if name is not None and name != plan.resolved.name:
            raise SoniqError(
                INVALID_ARGUMENT,
                f"name={name!r} does not match the target's task name "
                f"{plan.resolved.name!r}. Pass one of them, or the same name.",
            )
        row = plan.row(call_args)
        return PlannedSchedule(
            name=row.job_name,
            rule=rule,
            args_json=row.args_json,
            queue=row.queue,
            priority=row.priority,
            catch_up=catch_up,
        )

    def _get_job_registry(self) -> JobRegistry:
        """The registry of this app's jobs (kept for hooks written against older docs)."""
        return self.registry

    def before_job(self, hook: Hook) -> Hook:
        """Run ``hook(job_name, job_id, attempt)`` before every job."""
        self.hooks["before_job"].append(hook)
        return hook

    def after_job(self, hook: Hook) -> Hook:
        """Run ``hook(job_name, job_id, duration_ms)`` after every successful job."""
        self.hooks["after_job"].append(hook)
        return hook

    def on_error(self, hook: Hook) -> Hook:
        """Run ``hook(job_name, job_id, error, attempt)`` when a job raises."""
        self.hooks["on_error"].append(hook)
        return hook

    def _current_connection(self, connection: object) -> object:
        """``connection=`` as given, else the provider's open transaction, else None.

        Only PostgreSQL apps write on a caller's connection: on the other backends
        ``connection=`` raises, and a provider is not consulted. (The blocking app
        also joins Django's open transaction: see ``soniq_sync.django.join``.)
        """
        kind = storage_kind(self.settings)
        if kind != "postgres":
            if connection is not None:
                raise BackendUnsupportedError(
                    f"connection= needs the PostgreSQL backend: this app keeps its jobs in "
                    f"{kind}, which cannot join your transaction, so the job could "
                    "commit without your data or the other way round. Drop connection= "
                    "(the job is written at once), or use a PostgreSQL database URL.",
                    backend=kind,
                )
            return None
        if connection is None and self.connection_provider is not None:
            return self.connection_provider()
        return connection

    def _plan(
        self,
        target: object,
        args: object,
        func_kwargs: dict[str, Any],
        priority: object,
        queue: object,
        scheduled_at: object,
        unique: bool | None,
        *,
        stored_name: bool = False,
    ) -> JobPlan:
        """Check an enqueue call's target and options (cached for the common call).

        ``stored_name``: the target is a task name read back from a row Soniq wrote (a
        schedule's), so it is not checked against the name pattern again.
        """
        key: tuple[object, ...] | None = None
        if self._plans_settings is not self.settings:
            # Plans carry defaults (priority, attempts) from the settings they were made
            # with; new settings (soniq_sync.configure) start a new cache.
            self._plans.clear()
            self._plans_settings = self.settings
            self._instruments = enqueue_instruments(self.settings)
        if (
            priority is None
            and queue is None
            and scheduled_at is None
            and unique is None
            and not stored_name
        ):
            # The common call: a plan depends only on the target while the registry
            # stays the same, so it is worked out once.
            key = (target, args is not None, bool(func_kwargs), self.registry.version)
            try:
                cached = self._plans.get(key)
            except TypeError:  # an unhashable callable
                cached, key = None, None
            if cached is not None:
                return cached
        plan = plan_job(
            target,
            has_args=args is not None,
            has_kwargs=bool(func_kwargs),
            priority=priority,
            queue=queue,
            scheduled_at=scheduled_at,
            unique=unique,
            registry=self.registry,
            settings=self.settings,
            warner=self._warner,
            stored_name=stored_name,
        )
        # Unregistered names are not cached: warn mode must see every call.
        if key is not None and (plan.resolved.spec is not None or isinstance(target, TaskRef)):
            if len(self._plans) > 1024:
                self._plans.clear()
            self._plans[key] = plan
        return plan


#: The keyword options of ``@app.job()``, which ``@app.periodic()`` passes on.
_JOB_OPTIONS = frozenset(
    {
        "name",
        "retries",
        "max_retries",
        "priority",
        "queue",
        "unique",
        "retry_delay",
        "retry_backoff",
        "retry_max_delay",
        "timeout",
        "validate",
        "args_model",
    }
)


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error from any driver, or None.

    psycopg and asyncpg name it ``sqlstate``, psycopg2 ``pgcode``; SQLAlchemy wraps the
    driver's error in ``orig``.
    """
    for err in (exc, getattr(exc, "orig", None)):
        code = getattr(err, "sqlstate", None) or getattr(err, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


def check_page(limit: object, offset: object) -> None:
    """Reject a ``limit``/``offset`` pair that is not two ints >= 0."""
    for label, value in (("limit", limit), ("offset", offset)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise SoniqError(INVALID_ARGUMENT, f"{label} must be an int >= 0, got {value!r}.")


def job_id_param(job_id: object) -> str:
    """A job id as the queries take it, or SONIQ_INVALID_JOB_ID."""
    try:
        return str(uuid.UUID(str(job_id)))
    except ValueError:
        raise SoniqError(
            INVALID_JOB_ID, f"{job_id!r} is not a job id; job ids are UUID strings."
        ) from None


def _one_of(name_a: str, a: Any, name_b: str, b: Any) -> Any:
    if a is not None and b is not None and a != b:
        raise SoniqError(
            INVALID_JOB_OPTION,
            f"{name_a}= and {name_b}= are aliases; pass only one of them.",
        )
    return a if a is not None else b
