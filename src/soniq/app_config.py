"""What an app is declared with: settings, jobs, hooks, middleware, periodic schedules.

An :class:`AppConfig` is filled while the application is declared (``Soniq(...)``,
``@app.job()``, ``@app.before_job``...). Parts of it freeze once the app is in use, so
that nothing running is changed behind its back; a change then raises
``SONIQ_APP_FROZEN``. What freezes, and when:

- **settings**, from the app's first initialisation (``setup()``,
  ``ensure_initialized()``, the first enqueue or inspection, a worker start) until
  ``close()``. Open connections and running workers were made from them. Change them
  with ``app.reconfigure(...)``, which closes the connections first; assigning
  ``app.settings`` works only while the app is closed.
- **hooks and middleware**, from the first worker start (``app.worker()``,
  ``run_worker()``, ``drain()``) until ``close()``: a worker copies them when it
  starts, so one added later would silently never run there. Replacing the registry
  or the hooks object as a whole (``app.registry = ...``) is refused then too: a
  running worker holds the old one.
- **the retry policy and the metrics sink**, with the settings: from the first
  initialisation until ``close()`` (as the original Soniq did).
- **the registry and the periodic declarations** never freeze. Registering later is
  legitimate: Django's tasks backend registers each task on first enqueue, and a
  jobs module may be imported lazily. A worker looks each job's handler up when it
  claims the job, so it sees a later registration, and the enqueue plan cache is keyed
  on the registry's version. A second handler for a taken name is still refused
  (``SONIQ_DUPLICATE_TASK_NAME``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from soniq.core.middleware import Middleware, check_middleware
from soniq.core.registry import JobRegistry
from soniq.core.retry import RetryPolicy, check_retry_policy
from soniq.errors import APP_FROZEN, SoniqError
from soniq.observability.sinks import MetricsSink, check_metrics_sink
from soniq.plugins.commands import CliCommands
from soniq.plugins.installed import InstalledPlugins
from soniq.plugins.panels import DashboardPanels
from soniq.recurring.recurrence import PeriodicJob
from soniq.settings import SoniqSettings, configured_overrides
from soniq.storage.migration_sources import MigrationSources
from soniq.storage.urls import normalise_database_url, storage_kind

Hook = Callable[..., Any]


class Extensions:
    """The plugins of an app and what they register besides hooks and middleware:
    CLI commands, migration sources, dashboard panels. None of it freezes; installing
    a plugin does (see ``AppBase.use``)."""

    def __init__(self) -> None:
        self.plugins = InstalledPlugins()
        self.cli = CliCommands()
        self.migrations = MigrationSources()
        self.dashboard = DashboardPanels()


#: The worker's hook events, in the order a job meets them.
HOOK_EVENTS = ("before_job", "after_job", "on_error")


class AppConfig:
    """The declaration of one app; see the module docstring for what freezes when."""

    def __init__(
        self,
        settings: SoniqSettings,
        *,
        registry: JobRegistry | None = None,
        hooks: dict[str, list[Hook]] | None = None,
        middleware: list[Middleware] | None = None,
        periodic_jobs: dict[str, PeriodicJob] | None = None,
        extensions: Extensions | None = None,
        retry_policy: RetryPolicy | None = None,
        metrics_sink: MetricsSink | None = None,
    ) -> None:
        self._settings = settings
        self._retry_policy = check_retry_policy(retry_policy)
        self._metrics_sink = check_metrics_sink(metrics_sink)
        #: The registered jobs.
        self.registry = JobRegistry() if registry is None else registry
        #: The worker's hooks by event (see :data:`HOOK_EVENTS`), in registration order.
        self.hooks: dict[str, list[Hook]] = (
            {event: [] for event in HOOK_EVENTS} if hooks is None else hooks
        )
        #: Job middleware (see :mod:`soniq.core.middleware`), outermost first.
        self.middleware: list[Middleware] = [] if middleware is None else middleware
        #: Schedules declared by ``@app.periodic``, by task name.
        self.periodic_jobs: dict[str, PeriodicJob] = {} if periodic_jobs is None else periodic_jobs
        #: What plugins installed and added: see :class:`Extensions`.
        self.extensions = Extensions() if extensions is None else extensions
        self._in_use = False  # settings frozen
        self._serving = False  # hooks and middleware frozen

    @property
    def settings(self) -> SoniqSettings:
        """The settings the app was declared (or last reconfigured) with."""
        return self._settings

    @property
    def retry_policy(self) -> RetryPolicy | None:
        """The app's retry policy; None: each job's own retry options decide."""
        return self._retry_policy

    @property
    def metrics_sink(self) -> MetricsSink | None:
        """The app's metrics sink; None: Prometheus when SONIQ_METRICS is on, else none."""
        return self._metrics_sink

    @property
    def in_use(self) -> bool:
        """Whether the settings are frozen: initialised and not closed since."""
        return self._in_use

    @property
    def serving(self) -> bool:
        """Whether hooks and middleware are frozen: a worker started, not closed since."""
        return self._serving

    def sharing_declarations(self) -> AppConfig:
        """A config over the same registry, hooks, middleware and periodic declarations
        (the same objects, so a registration on either is seen by both), with these
        settings and nothing frozen. For ``soniq worker`` serving a blocking app's jobs
        from an async app."""
        return AppConfig(
            self._settings,
            registry=self.registry,
            hooks=self.hooks,
            middleware=self.middleware,
            periodic_jobs=self.periodic_jobs,
            extensions=self.extensions,
            retry_policy=self._retry_policy,
            metrics_sink=self._metrics_sink,
        )

    # -- changes --------------------------------------------------------------------

    def set_settings(self, settings: SoniqSettings) -> None:
        """Replace the settings, or raise ``SONIQ_APP_FROZEN`` while they are in use."""
        if self._in_use:
            raise SoniqError(
                APP_FROZEN,
                "The app's settings can't be assigned while it is in use (it has been "
                "initialised: an enqueue, setup(), a worker...). Use "
                "`await app.reconfigure(...)` (`app.reconfigure(...)` on a soniq_sync app, "
                "or soniq_sync.configure(...)), which closes the connections first and "
                "keeps the jobs and hooks; or assign them before first use or after "
                "app.close().",
                part="settings",
            )
        self._settings = settings

    def set_retry_policy(self, policy: object) -> None:
        """Replace the retry policy (None: the default), or raise ``SONIQ_APP_FROZEN``
        once the app is initialised, SONIQ_INVALID_ARGUMENT for a non-policy."""
        self._refuse_in_use("retry_policy")
        self._retry_policy = check_retry_policy(policy)

    def set_metrics_sink(self, sink: object) -> None:
        """Replace the metrics sink (None: the default), or raise ``SONIQ_APP_FROZEN``
        once the app is initialised, SONIQ_INVALID_ARGUMENT for a non-sink."""
        self._refuse_in_use("metrics_sink")
        self._metrics_sink = check_metrics_sink(sink)

    def _refuse_in_use(self, part: str) -> None:
        if self._in_use:
            raise SoniqError(
                APP_FROZEN,
                f"The app's {part} can't be set after it has been initialised (an "
                "enqueue, setup(), a worker...): workers and connections already use the "
                f"current one. Pass {part}= to Soniq(...), or set it before first use "
                "(or after app.close()).",
                part=part,
            )

    def replace_settings(self, settings: SoniqSettings) -> None:
        """Replace the settings even while in use: for ``reconfigure``, which has closed
        what was made from the old ones."""
        self._settings = settings

    def add_hook(self, event: str, hook: Hook) -> None:
        """Append ``hook`` to ``event``'s hooks, or raise ``SONIQ_APP_FROZEN`` while a
        worker of the app may be running."""
        if self._serving:
            raise SoniqError(
                APP_FROZEN,
                f"Can't add a {event} hook: a worker of this app has started, and a worker "
                "takes the hooks when it starts, so it would never run this one. Register "
                "hooks where the jobs are declared, before starting workers (or after "
                "app.close()).",
                part="hooks",
                event=event,
            )
        self.hooks[event].append(hook)

    def add_middleware(self, middleware: object) -> Middleware:
        """Append ``middleware`` (innermost so far), or raise ``SONIQ_INVALID_MIDDLEWARE``
        for a non-async callable and ``SONIQ_APP_FROZEN`` while a worker may be running."""
        checked = check_middleware(middleware)
        if self._serving:
            raise SoniqError(
                APP_FROZEN,
                "Can't add middleware: a worker of this app has started, and a worker "
                "builds its middleware chains when it starts, so it would never run this "
                "one. Register middleware where the jobs are declared, before starting "
                "workers (or after app.close()).",
                part="middleware",
            )
        self.middleware.append(checked)
        return checked

    def set_registry(self, registry: JobRegistry) -> None:
        """Replace the registry, or raise ``SONIQ_APP_FROZEN`` while a worker of the app
        may be running (it holds the old one)."""
        self._refuse_while_serving("registry")
        self.registry = registry

    def set_hooks(self, hooks: dict[str, list[Hook]]) -> None:
        """Replace the hooks, or raise ``SONIQ_APP_FROZEN`` while a worker of the app may
        be running (it took the old ones)."""
        self._refuse_while_serving("hooks")
        self.hooks = hooks

    def _refuse_while_serving(self, part: str) -> None:
        if self._serving:
            raise SoniqError(
                APP_FROZEN,
                f"Can't replace the app's {part}: a worker of this app has started and "
                f"holds the current {part}. Set it up before starting workers (or after "
                "app.close()).",
                part=part,
            )

    # -- lifecycle ------------------------------------------------------------------

    def freeze(self, *, worker: bool = False) -> None:
        """Mark the app initialised (settings freeze); ``worker``: a worker starts too
        (hooks and middleware freeze)."""
        self._in_use = True
        if worker:
            self._serving = True

    def thaw(self) -> None:
        """Mark the app closed: nothing made from the config is running any more."""
        self._in_use = self._serving = False

    def state(self) -> tuple[bool, bool]:
        """What is frozen now, for :meth:`restore` (``app.using_backend`` puts it back)."""
        return self._in_use, self._serving

    def restore(self, state: tuple[bool, bool]) -> None:
        """Put back a :meth:`state`."""
        self._in_use, self._serving = state


def load_settings(
    database_url: str | None, enqueue_validation: str | None, settings: dict[str, Any]
) -> SoniqSettings:
    """The settings ``Soniq(database_url, enqueue_validation=..., **settings)`` gets:
    the ``SONIQ_*`` environment overridden by the keywords, checked whole (a bad value
    or a URL that can never work raises SoniqError)."""
    settings = {**configured_overrides(), **settings}
    if database_url is not None:
        settings["database_url"] = database_url
    if enqueue_validation is not None:
        settings["enqueue_validation"] = enqueue_validation
    loaded = SoniqSettings.load(**settings)
    # Fail now, not at first use, on a URL that can never work.
    if storage_kind(loaded) == "postgres" and loaded.database_url is not None:
        normalise_database_url(loaded.database_url)
    return loaded
