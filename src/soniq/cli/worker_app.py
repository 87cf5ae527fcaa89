"""Finding the jobs a ``soniq worker`` should run: import the modules, collect the apps."""

from __future__ import annotations

import importlib
import os
import sys
import traceback

from soniq.app import _INSTANCES, Soniq
from soniq.errors import DUPLICATE_TASK_NAME, JOBS_MODULE_IMPORT_FAILED, SoniqError


def import_jobs_modules(modules: tuple[str, ...] | list[str]) -> None:
    """Import each module (the current directory first on ``sys.path``), or raise."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    for name in modules:
        try:
            importlib.import_module(name)
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            raise SoniqError(
                JOBS_MODULE_IMPORT_FAILED,
                f"Cannot import jobs module {name!r} (from SONIQ_JOBS_MODULES): {detail}. "
                "Fix the module, or run from the directory that contains it.",
                module=name,
                traceback=traceback.format_exc(),
            ) from exc


def app_for_worker(fallback: Soniq) -> Soniq:
    """The app whose jobs the worker runs.

    One app with registered jobs: that app. Several (one per module, say): their
    registrations and hooks are combined into ``fallback``. None: ``fallback``,
    which then dead-letters every job as not registered.
    """
    apps = [app for app in list(_INSTANCES) if len(app.registry) and app is not fallback]
    if len(apps) == 1:
        return apps[0]
    for app in apps:
        for name in app.registry.names():
            spec = app.registry.get(name)
            existing = fallback.registry.get(name)
            if spec is None:
                continue
            if existing is not None and existing.func is not spec.func:
                raise SoniqError(
                    DUPLICATE_TASK_NAME,
                    f"Task {name!r} is registered by two different apps' handlers. "
                    "Rename one of them.",
                    task_name=name,
                )
            fallback.registry.add(spec)
        for event, hooks in app.hooks.items():
            fallback.hooks[event].extend(h for h in hooks if h not in fallback.hooks[event])
    return fallback
