"""What the async ``soniq.Soniq`` and the blocking ``soniq_sync.Soniq`` share.

Settings, the job registry, hooks and the checks of an enqueue call do no I/O, so they
are written once here; only the methods that talk to PostgreSQL differ between the two
apps (and the blocking ones are generated from the async ones).
"""

from __future__ import annotations

import contextlib
import itertools
import weakref
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

from soniq.app_config import AppConfig, load_settings
from soniq.app_runtime import AppRuntime
from soniq.core.limits import Concurrency, RateLimit
from soniq.core.registry import JobRegistry, JobSpec, RetryDelay, build_spec
from soniq.core.retry import RetryPolicy
from soniq.enqueue.plan import JobPlan, UnknownNameWarner, normalise_args, plan_job
from soniq.enqueue.task_ref import TaskRef
from soniq.errors import (
    APP_FROZEN,
    INVALID_ARGUMENT,
    INVALID_JOB_OPTION,
    INVALID_TARGET,
    INVALID_TASK_NAME,
    PLUGIN_INVALID,
    BackendUnsupportedError,
    SoniqError,
    SoniqTypeError,
)
from soniq.observability.instruments import EnqueueInstruments
from soniq.observability.sinks import MetricsSink
from soniq.plugins.commands import CliCommands
from soniq.plugins.entry_points import discover_plugins, wants_all
from soniq.plugins.panels import DashboardPanels
from soniq.plugins.spec import SoniqPlugin
from soniq.recurring.blocking import NoInProcessScheduler
from soniq.recurring.recurrence import PeriodicJob, PlannedSchedule, recurrence
from soniq.settings import SoniqSettings
from soniq.storage.migration_sources import MigrationSources
from soniq.storage.urls import storage_kind

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=Callable[..., Any])
P = TypeVar("P")
AppT = TypeVar("AppT", bound="AppBase")
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

    What the app is declared with is its :class:`~soniq.app_config.AppConfig` (parts
    of which freeze once the app is in use; see that module); what it runs on is an
    :class:`~soniq.app_runtime.AppRuntime`, replaced whole when the settings change.
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        enqueue_validation: str | None = None,
        retry_policy: RetryPolicy | None = None,
        metrics_sink: MetricsSink | None = None,
        **settings: Any,
    ) -> None:
        # Private: an app made only to carry another's declarations installs no plugins.
        self._env_plugins = bool(settings.pop("_env_plugins", True))
        self._config = AppConfig(
            load_settings(database_url, enqueue_validation, settings),
            retry_policy=retry_policy,
            metrics_sink=metrics_sink,
        )
        self._runtime: AppRuntime[Any] = AppRuntime(self._config.settings)
        #: Consulted by ``enqueue`` calls without ``connection=``; see ConnectionProvider.
        self.connection_provider: ConnectionProvider | None = None
        self._warner = UnknownNameWarner()
        INSTANCES[next(_SERIAL)] = self

    @classmethod
    def _serving_declarations_of(cls: type[AppT], other: AppBase) -> AppT:
        """An app of this class over ``other``'s registry, hooks and periodic declarations
        (the same objects) with the same settings and a runtime of its own. ``soniq
        worker`` serves a blocking app's jobs from one; a memory app's jobs are not
        shared (the command refuses memory apps)."""
        app = cls(_env_plugins=False)
        app._config = other._config.sharing_declarations()
        app._runtime = AppRuntime(app._config.settings)
        return app

    # -- declaration ----------------------------------------------------------------

    @property
    def settings(self) -> SoniqSettings:
        """The settings in force: the app's own, or a temporary backend's inside
        ``using_backend``. Assignable only while the app is closed (before first use or
        after ``close()``); otherwise use ``reconfigure``."""
        return self._runtime.settings

    @settings.setter
    def settings(self, settings: SoniqSettings) -> None:
        self._config.set_settings(settings)  # raises SONIQ_APP_FROZEN while in use
        self._runtime = self._runtime.successor(settings)

    @property
    def registry(self) -> JobRegistry:
        """The registered jobs: ``@app.job()`` and ``@app.periodic()`` handlers.

        Assignable (to share another app's) until a worker of this app starts."""
        return self._config.registry

    @registry.setter
    def registry(self, registry: JobRegistry) -> None:
        self._config.set_registry(registry)

    @property
    def hooks(self) -> dict[str, list[Hook]]:
        """The worker's hooks by event (``before_job``, ``after_job``, ``on_error``).

        Assignable until a worker of this app starts."""
        return self._config.hooks

    @hooks.setter
    def hooks(self, hooks: dict[str, list[Hook]]) -> None:
        self._config.set_hooks(hooks)

    @property
    def retry_policy(self) -> RetryPolicy | None:
        """Decides the delay (or giving up) after each failed attempt with attempts left;
        None: each job's own ``@app.job()`` retry options. Assignable until the app is
        initialised (``SONIQ_APP_FROZEN`` after that, until ``close()``)."""
        return self._config.retry_policy

    @retry_policy.setter
    def retry_policy(self, policy: RetryPolicy | None) -> None:
        self._config.set_retry_policy(policy)

    @property
    def metrics_sink(self) -> MetricsSink | None:
        """Told of each job attempt's start and end by the app's workers; None: the
        Prometheus sink when ``SONIQ_METRICS`` is on, else nothing. Assignable until
        the app is initialised (``SONIQ_APP_FROZEN`` after that, until ``close()``)."""
        return self._config.metrics_sink

    @metrics_sink.setter
    def metrics_sink(self, sink: MetricsSink | None) -> None:
        self._config.set_metrics_sink(sink)

    @property
    def periodic_jobs(self) -> dict[str, PeriodicJob]:
        """Schedules declared by ``@app.periodic``, by task name."""
        return self._config.periodic_jobs

    @property
    def _instruments(self) -> EnqueueInstruments | None:
        """Metrics and tracing of enqueues; None when both are off (the usual case)."""
        return self._runtime.instruments

    # -- runtime swaps --------------------------------------------------------------

    def _swap_runtime(self, settings: SoniqSettings) -> AppRuntime[Any]:
        """Put the app on a new runtime for ``settings`` (the config takes them too and
        thaws); return the old runtime, whose backend the caller closes."""
        old = self._runtime
        self._config.replace_settings(settings)
        self._config.thaw()
        self._runtime = old.successor(settings)
        return old

    @contextlib.contextmanager
    def using_backend(self: AppT, backend: str = "memory") -> Iterator[AppT]:
        """Within the block, the app keeps its jobs on another backend; yields the app.

        Only ``"memory"`` for now: a fresh, empty in-memory database, for tests of code
        that enqueues through an app it imports::

            with app.using_backend("memory"):
                ...  # enqueue, drain, assert

        A plain ``with`` for the async and the blocking app alike; entering and
        leaving do no I/O. The registry, hooks and other settings are the app's own.
        Afterwards the app is back on its own backend and settings, and connections it
        had open stay open, untouched (they are not closed on the way in either).
        """
        if backend != "memory":
            raise SoniqError(
                INVALID_ARGUMENT,
                f"using_backend() takes 'memory', got {backend!r}. To move the app to "
                "another database for good, use reconfigure(database_url=...).",
            )
        runtime, settings, state = self._runtime, self._config.settings, self._config.state()
        self._runtime = AppRuntime(self.settings.model_copy(update={"backend": "memory"}))
        try:
            yield self
        finally:
            # Whatever happened inside (an initialisation, close(), reconfigure()) is
            # undone with the temporary runtime.
            self._runtime = runtime
            self._config.replace_settings(settings)
            self._config.restore(state)

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
        retry_jitter: bool = False,
        timeout: float | None = None,
        validate: type[BaseModel] | None = None,
        args_model: type[BaseModel] | None = None,
        concurrency: Concurrency | None = None,
        rate_limit: RateLimit | None = None,
        transactional: bool | Literal["django"] = False,
        using: str | None = None,
    ) -> Callable[[F], F]:
        """Register the decorated function as a job. Always call it: ``@app.job()``.

        Without ``queue=``, jobs go to a TaskRef's ``default_queue`` when enqueued
        through one, else to ``"default"``. ``retry_jitter=True`` picks each retry
        delay at random between half the computed delay and all of it.
        ``concurrency=Concurrency(n, key=...)`` and ``rate_limit=RateLimit(n, per=...)``
        limit the task fleet-wide, per rendered key (see the flow-control guide).
        ``transactional=True`` runs the handler in a transaction (``ctx.connection``)
        that commits the job's "done" with its writes; ``"django"`` runs it in
        ``transaction.atomic(using=using)`` (see the completion-and-progress guide).
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
            retry_jitter=retry_jitter,
            timeout=timeout,
            validate=validate,
            args_model=args_model,
            concurrency=concurrency,
            rate_limit=rate_limit,
            transactional=transactional,
            using=using,
        )

        def register(func: F) -> F:
            self._config.registry.add(make_spec(func))
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

        Exactly one of ``cron=`` (a 5-field cron string or a ``soniq.recurring.schedules``
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
            self._config.registry.add(spec)
            self._config.periodic_jobs[spec.name] = PeriodicJob(spec.name, rule, catch_up)
            return func

        return register

    def _scheduler_runner(self) -> Any:
        """What ``app.scheduler.start()`` runs. The blocking app's refuses (see
        ``soniq.recurring.blocking``); ``soniq.Soniq`` overrides it with the loop on a
        task. Typed ``Any``: each app's ``Scheduler`` has its own runner protocol."""
        return NoInProcessScheduler()

    def _max_attempts_for(self, name: str) -> int:
        """How many attempts a job of task ``name`` enqueued now gets."""
        spec = self.registry.get(name)
        return spec.max_attempts if spec is not None else self.settings.max_retries + 1

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
        retry_jitter: bool = False,
        timeout: float | None = None,
        validate: type[BaseModel] | None = None,
        args_model: type[BaseModel] | None = None,
        concurrency: Concurrency | None = None,
        rate_limit: RateLimit | None = None,
        transactional: bool | str = False,
        using: str | None = None,
    ) -> Callable[[Callable[..., Any]], JobSpec]:
        """Check the options of ``@app.job()`` now; build a function's spec later."""
        if _func is not None:
            raise SoniqTypeError(
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
                retry_jitter=retry_jitter,
                concurrency=concurrency,
                rate_limit=rate_limit,
                transactional=transactional,
                using=using,
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
            raise SoniqTypeError(
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

    def middleware(self, func: M) -> M:
        """Register ``async def func(ctx, call_next)`` round every job's handler.

        The first registered is the outermost. ``await call_next()`` runs the rest of
        the chain and the handler (a sync handler in the worker's threads) and returns
        its result; the middleware's return value is the job's result and its
        exception the job's failure. Use without parentheses: ``@app.middleware``.
        Refused (``SONIQ_APP_FROZEN``) once a worker of the app has started.
        """
        self._config.add_middleware(func)
        return func

    # -- plugins --------------------------------------------------------------------

    @property
    def plugins(self) -> list[SoniqPlugin]:
        """The installed plugins, in install order."""
        return list(self._config.extensions.plugins)

    @property
    def cli(self) -> CliCommands:
        """CLI commands plugins add to ``soniq``: ``app.cli.add_command(command)``."""
        return self._config.extensions.cli

    @property
    def migrations(self) -> MigrationSources:
        """Plugin SQL migrations ``setup`` applies after Soniq's own:
        ``app.migrations.register_source("my_plugin.migrations", prefix="my_plugin")``."""
        return self._config.extensions.migrations

    @property
    def dashboard(self) -> DashboardPanels:
        """Dashboard panels from plugins: ``app.dashboard.add_panel(PanelSpec(...))``."""
        return self._config.extensions.dashboard

    def use(self, plugin: P) -> P:
        """Install ``plugin``: call its ``install(app)`` now; returns the plugin.

        ``SONIQ_PLUGIN_INVALID`` if it is not a plugin, ``SONIQ_PLUGIN_DUPLICATE`` if
        one of the same name is installed, ``SONIQ_APP_FROZEN`` once the app is in use
        (its ``on_startup`` would never run): install plugins where the app is made.
        """
        self._install(plugin, "app.use()")
        return plugin

    def _install(self, plugin: object, origin: str) -> None:
        if self._config.in_use:
            raise SoniqError(
                APP_FROZEN,
                f"Can't install plugin {getattr(plugin, 'name', plugin)!r}: the app is in use "
                "(initialised by setup(), an enqueue or a worker), so its on_startup would "
                "never run. Install plugins where the app is made: Soniq(plugins=[...]), or "
                "app.use() before first use (or after app.close()).",
                part="plugins",
            )
        self._config.extensions.plugins.install(plugin, self, origin)

    def _install_plugins(self, plugins: Iterable[object] | None, autoload: bool) -> None:
        """Install the constructor's plugins, then those the environment asks for.

        ``plugins`` holds plugin objects and entry-point names (strings); a duplicate
        among them raises. Then the entry points named by ``SONIQ_PLUGINS`` (or all of
        them, for ``*``/``all`` there or ``autoload``); of these, one whose name is
        installed already is skipped, so an app that installs a plugin itself can run
        where ``SONIQ_PLUGINS`` names it too (for the ``soniq`` CLI).
        """
        if isinstance(plugins, (str, bytes)) or (
            plugins is not None and not isinstance(plugins, Iterable)
        ):
            raise SoniqError(
                PLUGIN_INVALID,
                f"plugins= takes a list of plugins (or entry-point names), got {plugins!r}.",
            )
        installed = self._config.extensions.plugins
        for item in plugins or ():
            if isinstance(item, str):
                for found in discover_plugins([item]):
                    self._install(found, f"entry point {item!r} in plugins=")
            else:
                self._install(item, "Soniq(plugins=...)")
        if not self._env_plugins:
            return
        names = list(self.settings.plugins)
        if autoload or wants_all(names):
            wanted, origin = None, "autoload_plugins" if autoload else "SONIQ_PLUGINS=*"
        elif names:
            wanted, origin = names, "SONIQ_PLUGINS"
        else:
            return
        for found in discover_plugins(wanted):
            if found.name not in installed:
                self._install(found, origin)

    def _serve_builtin_jobs(self) -> None:
        """Register Soniq's own jobs before a worker starts (the apps override this)."""

    def _get_job_registry(self) -> JobRegistry:
        """The registry of this app's jobs (kept for hooks written against older docs)."""
        return self.registry

    def before_job(self, hook: Hook) -> Hook:
        """Run ``hook(job_name, job_id, attempt)`` before every job."""
        self._config.add_hook("before_job", hook)
        return hook

    def after_job(self, hook: Hook) -> Hook:
        """Run ``hook(job_name, job_id, duration_ms)`` after every successful job."""
        self._config.add_hook("after_job", hook)
        return hook

    def on_error(self, hook: Hook) -> Hook:
        """Run ``hook(job_name, job_id, error, attempt)`` when a job raises."""
        self._config.add_hook("on_error", hook)
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
        # Plans carry defaults (priority, attempts) from the runtime's settings; new
        # settings come with a new runtime, and so a new cache.
        runtime = self._runtime
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
                cached = runtime.plans.get(key)
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
            settings=runtime.settings,
            warner=self._warner,
            stored_name=stored_name,
        )
        # Unregistered names are not cached: warn mode must see every call.
        if key is not None and (plan.resolved.spec is not None or isinstance(target, TaskRef)):
            runtime.remember(key, plan)
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
        "retry_jitter",
        "timeout",
        "validate",
        "args_model",
        "concurrency",
        "rate_limit",
        "transactional",
        "using",
    }
)


def _one_of(name_a: str, a: Any, name_b: str, b: Any) -> Any:
    if a is not None and b is not None and a != b:
        raise SoniqError(
            INVALID_JOB_OPTION,
            f"{name_a}= and {name_b}= are aliases; pass only one of them.",
        )
    return a if a is not None else b
