"""Enqueues inside Django's transactions, with and without soniq_sync.django installed.

Each test runs tests/acceptance/django_bare/views.py, a Django project configured by
``settings.configure(...)`` (Django configures once per process), and then checks the
jobs it left through Soniq's API. Every case there enqueues with its own name as the
``ref`` argument: ``gone:`` cases must leave no job, ``kept:`` cases exactly the jobs
they were given ids for, ``refused:`` cases a SoniqError and no job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import conninfo

import soniq_sync
from soniq.errors import (
    DATABASE_URL_MISSING,
    INVALID_SETTING,
    TRANSACTION_NOT_JOINABLE,
)
from soniq.testing.pytest_plugin import TestServer

ROOT = Path(__file__).resolve().parents[2]
APP = "soniq_sync.django"
PATHS = [
    "soniq_sync.enqueue",
    "soniq_sync.enqueue_many",
    "soniq_sync.schedule",
    "default_app().enqueue",
    "own.enqueue",
    "own.enqueue_many",
    "own.schedule",
]


def run_shop(soniq_url: str | None, **config: Any) -> dict[str, Any]:
    """Run the bare project with ``config`` (see views.py); return what it printed."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SONIQ_") and k != "DJANGO_SETTINGS_MODULE"
    }
    if soniq_url is not None:
        env["SONIQ_DATABASE_URL"] = soniq_url
    env["SHOP_CONFIG"] = json.dumps({"driver": "psycopg", "installed_apps": [], **config})
    proc = subprocess.run(
        [sys.executable, "-m", "tests.acceptance.django_bare.views"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"the Django script failed:\n{proc.stdout}\n{proc.stderr}"
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def jobs_by_ref(url: str) -> dict[str, list[str]]:
    """Every job in Soniq's database, its id listed under its ``ref`` argument."""
    app = soniq_sync.Soniq(url)
    try:
        found: dict[str, list[str]] = {}
        for job in app.list_jobs(limit=10_000):
            found.setdefault(job["args"]["ref"], []).append(job["id"])
        return {ref: sorted(ids) for ref, ids in found.items()}
    finally:
        app.close()


def kept(result: dict[str, Any]) -> dict[str, list[str]]:
    """The jobs the ``kept:`` cases must have left, by ref."""
    ids = {case: sorted(i) for case, i in result["ids"].items() if case.startswith("kept:")}
    assert all(ids.values()), f"a kept case returned no job id: {ids}"
    return ids


@pytest.fixture
def other_database_url(pg_server: TestServer) -> Iterator[str]:
    """A second empty database: Django's, when Soniq's jobs live somewhere else."""
    with pg_server.temporary_database(prefix="soniq_test_django_") as url:
        yield url


def spelled_otherwise(url: str) -> str:
    """``url`` with the server named ``localhost`` where it says ``127.0.0.1``."""
    if conninfo.conninfo_to_dict(url).get("host") != "127.0.0.1":
        return url  # a socket or another host: nothing to respell
    return conninfo.make_conninfo(url, host="localhost")


@pytest.mark.parametrize(
    ("driver", "installed_apps", "spelling"),
    [
        ("psycopg", [], "same"),
        ("psycopg2", [], "same"),
        ("psycopg", [APP], "same"),
        ("psycopg", [], "localhost"),
    ],
    ids=[
        "psycopg-without-app",
        "psycopg2-without-app",
        "psycopg-with-app",
        "django-says-localhost",
    ],
)
def test_enqueues_join_djangos_transaction_on_every_path(
    database_url: str, driver: str, installed_apps: list[str], spelling: str
) -> None:
    django_url = spelled_otherwise(database_url) if spelling == "localhost" else database_url
    # With the app, the default app's URL comes from DATABASES; without, from the env.
    result = run_shop(
        None if installed_apps else database_url,
        scenario="views",
        driver=driver,
        installed_apps=installed_apps,
        databases={"default": {"url": django_url}},
        own_url=database_url,
    )
    assert result["driver"] == driver
    assert result["errors"] == {}
    assert result["status"] == {
        "gone:ATOMIC_REQUESTS view that fails": 500,
        "kept:ATOMIC_REQUESTS view": 200,
    }
    expected_cases = {
        f"{outcome}, {path}"
        for path in PATHS
        for outcome in (
            "gone:rolled back view",
            "kept:committed view",
            "kept:outside atomic",
        )
    } | {
        "kept:block around a rolled-back savepoint",
        "gone:rolled-back savepoint",
        "gone:set_autocommit(False), rollback",
        "kept:set_autocommit(False), commit",
        "gone:ATOMIC_REQUESTS view that fails",
        "kept:ATOMIC_REQUESTS view",
        "kept:connection= of its own, in a rolled-back view",
        "kept:connection_provider of its own, in a rolled-back view",
    }
    assert set(result["ids"]) == expected_cases
    # Rolled back: no job. Committed or outside a transaction: exactly its own jobs.
    assert jobs_by_ref(database_url) == kept(result)
    assert result["log"] == []


@pytest.mark.parametrize("django_database", ["postgresql", "postgresql-with-app", "sqlite"])
def test_a_separate_queue_database_is_written_at_once_with_one_warning(
    database_url: str, other_database_url: str, tmp_path: Path, django_database: str
) -> None:
    """ATOMIC_REQUESTS sites whose jobs live in another database keep working."""
    config: dict[str, Any] = {
        "scenario": "separate",
        "databases": {"default": {"url": other_database_url}},
        "own_url": database_url,
    }
    soniq_url: str | None = database_url
    if django_database == "postgresql-with-app":
        config.update(installed_apps=[APP], soniq={"DATABASE_URL": database_url})
        soniq_url = None
    elif django_database == "sqlite":
        config["databases"] = {"default": {"sqlite": str(tmp_path / "shop.sqlite3")}}
    result = run_shop(soniq_url, **config)

    assert result["errors"] == {}
    assert result["status"] == {
        "kept:ATOMIC_REQUESTS view that fails": 500,
        "kept:ATOMIC_REQUESTS view": 200,
    }
    # Every job was committed at once, even those of rolled-back views.
    assert jobs_by_ref(database_url) == kept(result)
    assert len(kept(result)) == 2 * len(PATHS) + 2
    # Sixteen enqueues in transactions, through two apps: one warning.
    assert len(result["log"]) == 1, result["log"]
    warning = result["log"][0]
    assert "SONIQ['DATABASE_ALIAS']" in warning
    assert "'default'" in warning
    assert "transaction.on_commit()" in warning
    if django_database == "sqlite":
        assert "is sqlite" in warning
    else:
        assert "another database" in warning
        assert other_database_url.rsplit("/", 1)[1] in warning
        assert database_url.rsplit("/", 1)[1] in warning


def test_soniq_on_sqlite_warns_once_and_memory_stays_silent(
    database_url: str, tmp_path: Path
) -> None:
    sqlite_url = f"sqlite:///{tmp_path / 'jobs.db'}"
    result = run_shop(
        sqlite_url,
        scenario="local",
        databases={"default": {"url": database_url}},
        own_url=sqlite_url,
    )
    assert result["errors"] == {}
    assert jobs_by_ref(sqlite_url) == kept(result)
    assert len(kept(result)) == len(PATHS)
    assert len(result["log"]) == 1, result["log"]
    assert "SQLite" in result["log"][0] and "SONIQ['DATABASE_ALIAS']" in result["log"][0]
    # The memory backend (soniq_sync.testing.in_memory) keeps the job and says nothing.
    assert result["memory"] == {"found": [True], "log": []}


def test_settings_that_cannot_work_and_drivers_soniq_cannot_use_are_refused(
    database_url: str, tmp_path: Path
) -> None:
    result = run_shop(
        database_url,
        scenario="refusals",
        databases={
            "default": {"url": database_url},
            "lite": {"sqlite": str(tmp_path / "lite.sqlite3")},
            "proxied": {"url": database_url, "proxied": True},
        },
        own_url=database_url,
    )
    codes = {case: error["code"] for case, error in result["errors"].items()}
    settings_cases = [
        f"refused:{label}, {where}"
        for label in (
            "unknown alias",
            "alias that is not PostgreSQL",
            "SONIQ that is not a dict",
            "alias that is not a string",
        )
        for where in ("committed view", "outside atomic")
    ]
    assert codes == {
        **dict.fromkeys(settings_cases, INVALID_SETTING),
        "refused:driver Soniq cannot write through, in atomic": TRANSACTION_NOT_JOINABLE,
        "refused:app without a database URL, committed view": DATABASE_URL_MISSING,
    }
    messages = {case: error["message"] for case, error in result["errors"].items()}
    assert "'missing', which is not a key of settings.DATABASES" in messages[settings_cases[0]]
    assert "a sqlite database" in messages[settings_cases[2]]
    assert "must be a dict" in messages[settings_cases[4]]
    not_joinable = messages["refused:driver Soniq cannot write through, in atomic"]
    assert "'proxied'" in not_joinable and "DriverProxy" in not_joinable
    assert "transaction.on_commit" in not_joinable
    assert (
        "add 'soniq_sync.django' to INSTALLED_APPS"
        in (messages["refused:app without a database URL, committed view"])
    )
    # Nothing refused was written; outside a transaction the proxied alias is no matter.
    assert jobs_by_ref(database_url) == kept(result)
    assert list(kept(result)) == ["kept:driver Soniq cannot write through, outside atomic"]
    assert result["log"] == []
