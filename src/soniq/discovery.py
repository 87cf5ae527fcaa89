"""Finding the app a process should use, as the CLI does (the original's soniq.discovery).

``find_soniq_app(["myproject.jobs"])`` imports the modules (the current directory
first on ``sys.path``) and returns the app whose jobs a worker started there would
run. Unlike the original, several apps that register jobs are not an error: their
jobs and hooks are gathered on the first one, as ``soniq worker`` does, as long as
they share a database.
"""

from __future__ import annotations

from collections.abc import Sequence

from soniq.app import Soniq
from soniq.cli.worker_app import import_jobs_modules, pick_app
from soniq.settings import SoniqSettings

__all__ = ["find_soniq_app"]


def find_soniq_app(modules: Sequence[str] | None = None) -> Soniq:
    """Import ``modules`` (default: ``SONIQ_JOBS_MODULES``) and return the app found.

    With no app in them, a ``Soniq()`` configured from the environment. A module that
    fails to import raises ``SONIQ_JOBS_MODULE_IMPORT_FAILED``.
    """
    names = list(SoniqSettings.load().jobs_modules if modules is None else modules)
    import_jobs_modules(names)
    return pick_app()
