"""The Django app config: ``INSTALLED_APPS = [..., "soniq_sync.django"]``."""

from __future__ import annotations

import importlib

from django.apps import AppConfig

WORKER_MODULE = "soniq_sync.django.worker"


class SoniqConfig(AppConfig):  # type: ignore[misc]
    """Configures the default ``soniq_sync`` app from ``settings.SONIQ`` at start-up.

    Enqueues join Django's transactions without it too; the app adds the settings,
    the URL built from ``DATABASES`` and the import of ``SONIQ['JOBS_MODULES']``.
    """

    name = "soniq_sync.django"
    label = "soniq"
    verbose_name = "Soniq"
    default = True

    def ready(self) -> None:
        """Read ``settings.SONIQ`` (a bad value raises SoniqError) and configure Soniq.

        Then import ``SONIQ['JOBS_MODULES']``, so jobs registered there can be
        enqueued by name from this process as well as run by the worker.
        """
        from django.db.backends.signals import connection_created

        from soniq_sync.django.configured import configure_default_app, follow_database_changes

        app = configure_default_app()
        connection_created.connect(follow_database_changes, dispatch_uid="soniq_sync.django")
        for module in app.settings.jobs_modules:
            if module != WORKER_MODULE:  # it sets Django up: only `soniq worker` imports it
                importlib.import_module(module)
