"""Load a Django project into ``soniq worker``: ``SONIQ_JOBS_MODULES=soniq_sync.django.worker``.

Importing this module sets Django up from ``$DJANGO_SETTINGS_MODULE`` (the
``soniq_sync.django`` app must be installed), imports the ``tasks`` module of every
installed app, where ``@task`` functions register themselves as Soniq jobs, and then
the modules named by ``SONIQ['JOBS_MODULES']``, for tasks and ``@soniq_sync.job()``
functions that live elsewhere. The worker then serves them with the settings of
``settings.SONIQ``.
"""

from __future__ import annotations

import importlib
import os

from soniq.errors import INVALID_SETTING, SoniqError


def load_project() -> None:
    """Set Django up and import every module that declares tasks or jobs."""
    import django
    from django.apps import apps
    from django.conf import settings
    from django.utils.module_loading import autodiscover_modules

    if not os.environ.get("DJANGO_SETTINGS_MODULE") and not settings.configured:
        raise SoniqError(
            INVALID_SETTING,
            "soniq_sync.django.worker needs Django settings: set DJANGO_SETTINGS_MODULE "
            "(e.g. DJANGO_SETTINGS_MODULE=mysite.settings) for the worker.",
            setting="DJANGO_SETTINGS_MODULE",
        )
    django.setup()
    if not apps.is_installed("soniq_sync.django"):
        raise SoniqError(
            INVALID_SETTING,
            "soniq_sync.django is not in INSTALLED_APPS, so settings.SONIQ was not read. "
            'Add "soniq_sync.django" to INSTALLED_APPS.',
            setting="INSTALLED_APPS",
        )
    autodiscover_modules("tasks")
    import soniq_sync

    for name in soniq_sync.default_app().settings.jobs_modules:
        if name != __name__:
            importlib.import_module(name)


load_project()
