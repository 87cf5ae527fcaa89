"""``python manage.py soniq_setup``: create or upgrade Soniq's tables."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from soniq.errors import SoniqError


class Command(BaseCommand):  # type: ignore[misc]
    """Apply Soniq's migrations to the database the Django app is configured for."""

    help = "Create or upgrade Soniq's tables (idempotent; safe to run concurrently)."

    def handle(self, *args: Any, **options: Any) -> None:
        """Run ``default_app().setup()`` and report what it applied."""
        import soniq_sync

        try:
            applied = soniq_sync.default_app().setup()
        except SoniqError as exc:
            raise CommandError(str(exc)) from exc
        if applied:
            self.stdout.write(f"Applied Soniq migrations: {', '.join(applied)}")
        else:
            self.stdout.write("Soniq's schema is up to date; nothing to apply.")
