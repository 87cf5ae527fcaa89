"""Finding the jobs a ``soniq worker`` should run: import the modules, collect the apps."""

from __future__ import annotations

import importlib
import os
import sys
import traceback

from soniq.app import Soniq
from soniq.app_base import INSTANCES, AppBase
from soniq.cli.session import refuse_memory
from soniq.errors import (
    DUPLICATE_TASK_NAME,
    INVALID_SETTING,
    JOBS_MODULE_IMPORT_FAILED,
    SoniqError,
)


def import_jobs_modules(modules: tuple[str, ...] | list[str]) -> None:
    """Import each module (the current directory first on ``sys.path``), or raise."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            raise SoniqError(
                JOBS_MODULE_IMPORT_FAILED,
                f"Cannot import jobs module {name!r} (from SONIQ_JOBS_MODULES or "
                f"--jobs-modules): {detail}. Fix the module, or run from the directory that "
                "contains it.",
                module=name,
                traceback=traceback.format_exc(),
            ) from exc


def app_for_worker() -> Soniq:
    """The app whose jobs the worker (or scheduler) runs; see :func:`pick_app`.

    Not on the memory backend, whose jobs no other process can see.
    """
    app = pick_app()
    refuse_memory(app)
    return app


def pick_app() -> Soniq:
    """The app whose jobs the worker runs.

    The first app (in creation order) that registers jobs, with its own settings.
    Jobs registered on other apps, and hooks registered on any app, are added to it.
    A blocking ``soniq_sync.Soniq`` counts like an async one: the worker runs its jobs.
    With no app at all, one configured from the environment, which dead-letters every
    job as not registered (the worker warns about that at start).
    """
    apps = [app for _, app in sorted(INSTANCES.items())]
    with_jobs = [app for app in apps if len(app.registry)]
    if not with_jobs:
        return _async(apps[0]) if apps else Soniq()
    base = with_jobs[0]
    urls = {app.settings.database_url for app in with_jobs}
    if len(urls) > 1:
        raise SoniqError(
            INVALID_SETTING,
            "The jobs modules create apps for different databases; one worker serves one "
            "database. Run a worker per database, each with its own SONIQ_JOBS_MODULES.",
        )
    for app in apps:
        if app is base:
            continue
        for name in app.registry.names():
            spec = app.registry.get(name)
            existing = base.registry.get(name)
            if spec is None:
                continue
            if existing is not None and existing.func is not spec.func:
                raise SoniqError(
                    DUPLICATE_TASK_NAME,
                    f"Task {name!r} is registered by two different apps' handlers. "
                    "Rename one of them.",
                    task_name=name,
                )
            base.registry.add(spec)
        for event, hooks in app.hooks.items():
            base.hooks[event].extend(h for h in hooks if h not in base.hooks[event])
    # A retry policy or metrics sink set on another of the modules' apps applies too,
    # unless the serving app has its own (the first app's wins).
    for part in ("retry_policy", "metrics_sink"):
        if getattr(base, part) is None:
            chosen = next((getattr(a, part) for a in apps if getattr(a, part) is not None), None)
            if chosen is not None:
                setattr(base, part, chosen)
    return _async(base)


def _async(app: AppBase) -> Soniq:
    """``app`` if it is async; for a blocking app, an async app serving its declarations
    (the same registry, hooks and periodic schedules) with its settings."""
    if isinstance(app, Soniq):
        return app
    return Soniq._serving_declarations_of(app)
