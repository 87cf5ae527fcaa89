"""settings.SONIQ, the derived database URL, start-up errors and soniq_setup."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connections
from django.test import override_settings
from psycopg import conninfo

import soniq_sync
from soniq.errors import INVALID_SETTING, SoniqError
from soniq_sync.django import atomic_connection_for
from soniq_sync.django.conf import database_url_for, read_config
from soniq_sync.django.configured import configure_default_app, follow_database_changes
from tests.django_project.conftest import ROOT


def refused(**soniq: Any) -> SoniqError:
    with override_settings(SONIQ=soniq), pytest.raises(SoniqError) as err:
        read_config()
    assert err.value.code == INVALID_SETTING
    return err.value


def test_unknown_keys_are_refused_with_the_known_ones() -> None:
    err = refused(CONCURENCY=2)
    assert "'CONCURENCY'" in err.message and "CONCURRENCY" in err.message
    assert "write 'DATABASE_URL'" in refused(database_url="postgresql://x/y").message


def test_bad_values_name_the_django_setting() -> None:
    err = refused(CONCURRENCY=0)
    assert err.message.startswith("settings.SONIQ:")
    assert err.details["setting"] == "SONIQ_CONCURRENCY"


def test_soniq_must_be_a_dict() -> None:
    with override_settings(SONIQ=["DATABASE_URL"]), pytest.raises(SoniqError) as err:
        read_config()
    assert err.value.code == INVALID_SETTING


def test_the_alias_must_be_a_postgresql_database() -> None:
    assert "not a key of settings.DATABASES" in refused(DATABASE_ALIAS="missing").message
    assert "sqlite" in refused(DATABASE_ALIAS="sqlite").message
    with pytest.raises(SoniqError) as err:
        atomic_connection_for("sqlite")
    assert err.value.code == INVALID_SETTING


def test_the_url_comes_from_databases_with_libpq_options_only() -> None:
    config = read_config()
    assert config.url_from_databases and config.alias == "default"
    parts = conninfo.conninfo_to_dict(config.overrides["database_url"])
    django_settings = connections["default"].settings_dict
    assert parts["dbname"] == django_settings["NAME"]
    assert parts["application_name"] == "soniq-django-tests"
    assert "server_side_binding" not in parts
    assert soniq_sync.default_app().settings.database_url == database_url_for("default")


def test_an_explicit_url_wins_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with override_settings(SONIQ={"DATABASE_URL": "postgresql://h/explicit"}):
        config = read_config()
    assert config.overrides["database_url"] == "postgresql://h/explicit"
    assert not config.url_from_databases
    monkeypatch.setenv("SONIQ_DATABASE_URL", "postgresql://h/from-env")
    config = read_config()
    assert "database_url" not in config.overrides and not config.url_from_databases


def test_the_url_follows_a_renamed_database(monkeypatch: pytest.MonkeyPatch) -> None:
    """What Django's test runner does to NAME after ready(): Soniq's pool follows."""
    conn = connections["default"]
    original = soniq_sync.default_app().settings.database_url
    monkeypatch.setitem(conn.settings_dict, "NAME", "test_elsewhere")
    try:
        follow_database_changes(sender=None, connection=conn)
        url = soniq_sync.default_app().settings.database_url
        assert url is not None and conninfo.conninfo_to_dict(url)["dbname"] == "test_elsewhere"
    finally:
        monkeypatch.undo()
        configure_default_app()
    assert soniq_sync.default_app().settings.database_url == original


@pytest.mark.django_db
def test_soniq_setup_command(capsys: pytest.CaptureFixture[str]) -> None:
    call_command("soniq_setup")
    assert "up to date" in capsys.readouterr().out


def start_django(script: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SONIQ_")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_startup_fails_on_a_bad_soniq_setting() -> None:
    proc = start_django(
        """
        from django.conf import settings
        import django
        from soniq.errors import SoniqError

        settings.configure(
            INSTALLED_APPS=["soniq_sync.django"],
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        )
        try:
            django.setup()
        except SoniqError as exc:
            print(exc.code, exc.message)
        """
    )
    assert proc.stdout.startswith(INVALID_SETTING), proc.stderr
    assert "sqlite" in proc.stdout


def test_the_worker_module_needs_django_settings() -> None:
    proc = start_django(
        """
        from soniq.errors import SoniqError
        try:
            import soniq_sync.django.worker
        except SoniqError as exc:
            print(exc.code, exc.message)
        """
    )
    assert proc.stdout.startswith(INVALID_SETTING), proc.stderr
    assert "DJANGO_SETTINGS_MODULE" in proc.stdout
