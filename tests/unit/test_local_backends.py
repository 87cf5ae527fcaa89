"""Choosing a backend from the settings, and the local backends' errors and test helpers.

No PostgreSQL here: the SQLite and memory backends run on the stdlib's sqlite3.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

import soniq_sync
import soniq_sync.testing
from soniq import Soniq, SoniqError
from soniq.database_url import sqlite_path, storage_kind
from soniq.errors import (
    DATABASE_UNREACHABLE,
    INVALID_DATABASE_URL,
    INVALID_SETTING,
    NOT_SUPPORTED_BY_BACKEND,
    BackendUnsupportedError,
)
from soniq.settings import SoniqSettings
from soniq.testing import assert_enqueued, drain, enqueued_jobs, in_memory


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///jobs.db", "jobs.db"),
        ("sqlite:////var/lib/app/jobs.db", "/var/lib/app/jobs.db"),
        ("SQLite:///data/jobs", "data/jobs"),  # any name once the scheme says SQLite
        ("jobs.db", "jobs.db"),
        ("./data/jobs.sqlite3", "./data/jobs.sqlite3"),
        ("/tmp/x.SQLITE", "/tmp/x.SQLITE"),
        ("postgresql://localhost/app", None),
        ("host=localhost dbname=app", None),
        ("jobs.txt", None),
    ],
)
def test_sqlite_urls_and_paths_name_a_file(url: str, path: str | None) -> None:
    assert sqlite_path(url) == path


@pytest.mark.parametrize(
    "url", ["sqlite://", "sqlite:///", "sqlite://jobs.db", "sqlite:///:memory:"]
)
def test_a_sqlite_url_without_a_file_says_how_to_write_one(url: str) -> None:
    with pytest.raises(SoniqError) as caught:
        Soniq(database_url=url)
    assert caught.value.code == INVALID_DATABASE_URL
    assert "sqlite:///relative/path.db" in caught.value.message
    assert 'backend="memory"' in caught.value.message


@pytest.mark.parametrize(
    ("settings", "kind"),
    [
        ({}, "postgres"),
        ({"database_url": "postgresql://localhost/app"}, "postgres"),
        ({"database_url": "sqlite:///jobs.db"}, "sqlite"),
        ({"database_url": "jobs.db", "backend": "sqlite"}, "sqlite"),
        ({"backend": "memory"}, "memory"),
        ({"backend": "memory", "database_url": "postgresql://localhost/app"}, "memory"),
    ],
)
def test_the_backend_follows_the_url_unless_set(settings: dict[str, str], kind: str) -> None:
    assert storage_kind(SoniqSettings.load({}, **settings)) == kind
    if settings:  # (without a URL, a PostgreSQL app can't build its backend)
        assert Soniq(**settings).backend.kind == kind


@pytest.mark.parametrize(
    "settings",
    [
        {"backend": "sqlite", "database_url": "postgresql://localhost/app"},
        {"backend": "postgres", "database_url": "sqlite:///jobs.db"},
        {"backend": "redis"},
    ],
)
def test_a_backend_that_cannot_be_is_an_invalid_setting(settings: dict[str, str]) -> None:
    with pytest.raises(SoniqError) as caught:
        Soniq(**settings).backend  # noqa: B018  (the property builds the backend)
    assert caught.value.code == INVALID_SETTING
    assert "SONIQ_BACKEND" in str(caught.value)


def test_the_backend_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SONIQ_BACKEND", "memory")
    monkeypatch.setenv("SONIQ_DATABASE_URL", "postgresql://nobody@db.invalid/app")
    assert Soniq().backend.kind == "memory"


@pytest.mark.parametrize("where", ["missing folder", "not a database"])
async def test_a_file_sqlite_cannot_open_is_unreachable(tmp_path: Path, where: str) -> None:
    if where == "missing folder":
        path = tmp_path / "nowhere" / "jobs.db"
    else:
        path = tmp_path / "notes.db"
        path.write_text("these are my notes, not a database\n" * 100)
    app = Soniq(database_url=str(path), enqueue_validation="none")
    with pytest.raises(SoniqError) as caught:
        await app.enqueue("jobs.anything")
    assert caught.value.code == DATABASE_UNREACHABLE
    assert str(path) in caught.value.message
    assert not (tmp_path / "nowhere").exists()
    await app.close()


async def test_acquire_and_connection_are_postgres_only(tmp_path: Path) -> None:
    app = Soniq(database_url=f"sqlite:///{tmp_path / 'jobs.db'}", enqueue_validation="none")
    with pytest.raises(BackendUnsupportedError) as caught:
        app.backend.acquire()
    assert caught.value.code == NOT_SUPPORTED_BY_BACKEND
    assert isinstance(caught.value, ValueError)
    with pytest.raises(ValueError, match="connection= needs the PostgreSQL backend"):
        await app.enqueue("jobs.anything", connection=object())
    assert await app.list_jobs() == []
    await app.close()


def test_the_unsupported_error_survives_pickling() -> None:
    err = BackendUnsupportedError("No connection here.", backend="memory")
    copy = pickle.loads(pickle.dumps(err))
    assert isinstance(copy, BackendUnsupportedError) and isinstance(copy, ValueError)
    assert (copy.code, copy.message, copy.details) == (err.code, err.message, err.details)


# --------------------------------------------------------------------------- in_memory


async def test_in_memory_points_an_app_at_a_fresh_memory_store_and_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    app = Soniq(database_url=url)

    @app.job(name="signup.welcome")
    async def welcome(email: str) -> str:
        return f"hello {email}"

    outside = await app.enqueue(welcome, email="file@example.com")
    with in_memory(app) as same:
        assert same is app and app.backend.kind == "memory"
        assert await enqueued_jobs(app) == []  # the file's job is not here
        job_id = await app.enqueue(welcome, email="ada@example.com")
        await assert_enqueued(app, welcome, {"email": "ada@example.com"}, count=1)
        assert (await drain(app)).done == 1
        assert await app.get_result(job_id) == "hello ada@example.com"
    assert app.settings.database_url == url and app.backend.kind == "sqlite"
    assert [job["id"] for job in await enqueued_jobs(app)] == [outside]
    with in_memory(app):
        assert await app.list_jobs() == []  # each use starts empty
    await app.close()


def test_in_memory_works_for_a_blocking_app_and_its_worker() -> None:
    app = soniq_sync.Soniq(database_url="postgresql://nobody@db.invalid/app")

    @app.job(name="report.build")
    def build(n: int) -> int:
        return n * 2

    with soniq_sync.testing.in_memory(app):
        job_id = app.enqueue(build, n=21)
        # drain runs the async worker on a twin of the app: it must see the same store.
        assert soniq_sync.testing.drain(app).done == 1
        assert app.get_result(job_id) == 42
    assert app.backend.kind == "postgres"
