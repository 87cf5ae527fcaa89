"""The test app's config: connects the task signal receivers (see signals.py)."""

from __future__ import annotations

from django.apps import AppConfig


class TestAppConfig(AppConfig):
    name = "tests.django_project.testapp"
    label = "testapp"

    def ready(self) -> None:
        from tests.django_project.testapp import signals

        signals.connect()
