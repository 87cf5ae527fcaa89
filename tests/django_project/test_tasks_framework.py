"""Which tasks framework the backend runs on: Django's own from Django 6, else the backport.

tests/acceptance/test_django_suite.py runs these tests on every Python that scripts/test
and scripts/test-pythons use; on Python 3.12+ pip installs Django 6 and no backport, so
there the rest of tests/django_project exercises the built-in ``django.tasks``.
"""

from __future__ import annotations

import django

from soniq_sync.django import _compat
from soniq_sync.django.backend import SoniqBackend
from tests.django_project.testapp import tasks


def test_django_6_uses_its_built_in_tasks_framework() -> None:
    built_in = django.VERSION >= (6, 0)
    home = "django.tasks" if built_in else "django_tasks"
    assert _compat.Task.__module__.partition(".base")[0] == home
    assert type(tasks.add).__module__.partition(".base")[0] == home
    assert issubclass(SoniqBackend, _compat.BaseTaskBackend)
