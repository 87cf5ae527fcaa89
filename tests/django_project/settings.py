"""Django settings for the tests under tests/django_project (psycopg 3, Django's default driver).

The database comes from $SONIQ_DJANGO_TEST_DATABASE_URL: an existing database that
already has Soniq's tables (tests/acceptance/test_django_suite.py makes one per run).
"""

from __future__ import annotations

import os

from psycopg import conninfo

_url = os.environ.get("SONIQ_DJANGO_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1/postgres")
_parts = conninfo.conninfo_to_dict(_url)

SECRET_KEY = "soniq-tests"
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = ["soniq_sync.django", "tests.django_project.testapp"]
ROOT_URLCONF = "tests.django_project.testapp.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _parts.get("dbname", ""),
        "USER": _parts.get("user", ""),
        "PASSWORD": _parts.get("password", ""),
        "HOST": _parts.get("host", ""),
        "PORT": _parts.get("port", ""),
        # A Django-only option: must not reach the URL Soniq derives.
        "OPTIONS": {"application_name": "soniq-django-tests", "server_side_binding": False},
    },
    # Not PostgreSQL: for the tests that expect Soniq to refuse it.
    "sqlite": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
}
SONIQ = {"DATABASE_ALIAS": "default", "JOBS_MODULES": ["tests.django_project.testapp.jobs"]}
TASKS = {
    "default": {
        "BACKEND": "soniq_sync.django.backend.SoniqBackend",
        # No test worker serves "parked": its tasks stay READY for as long as a test looks.
        "QUEUES": ["default", "other", "parked"],
        "OPTIONS": {"MAX_RETRIES": 0},
    },
    # Jobs of tasks declared on this alias get a second attempt.
    "retrying": {
        "BACKEND": "soniq_sync.django.backend.SoniqBackend",
        "OPTIONS": {"MAX_RETRIES": 1},
    },
}
