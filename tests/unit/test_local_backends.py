"""Choosing a backend from the settings, and the local backends' errors and test helpers.

No PostgreSQL here: the SQLite and memory backends run on the stdlib's sqlite3.
"""

from __future__ import annotations

import os
import pickle
import sqlite3
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner

import soniq_sync
import soniq_sync.testing
from soniq import Soniq, SoniqError
from soniq.cli import main
from soniq.errors import (
    DATABASE_UNREACHABLE,
    INVALID_DATABASE_URL,
    INVALID_SETTING,
    NOT_SUPPORTED_BY_BACKEND,
    SQLITE_TOO_OLD,
    BackendUnsupportedError,
)
from soniq.settings import SoniqSettings
from soniq.storage.local import SQLiteBackend
from soniq.storage.queries import SQLITE_QUERIES
from soniq.storage.sqlite_engine import SqliteStore, StoreBusy
from soniq.storage.urls import sqlite_path, storage_kind
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
        ("C:/data/jobs.db", "C:/data/jobs.db"),  # a Windows drive, not a scheme
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
        # drain runs the async worker on a backend of its own: it must see the same store.
        assert soniq_sync.testing.drain(app).done == 1
        assert app.get_result(job_id) == 42
    assert app.backend.kind == "postgres"


# --------------------------------------------------------------------------- the store


def test_an_old_sqlite_is_refused_with_the_version_it_needs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 37, 2))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.37.2")
    with pytest.raises(SoniqError) as caught:
        SqliteStore(":memory:")
    assert caught.value.code == SQLITE_TOO_OLD
    assert "3.39.0" in caught.value.message and "3.37.2" in caught.value.message


def test_a_held_write_lock_is_busy_and_only_that_is_unavailable(tmp_path: Path) -> None:
    path = str(tmp_path / "jobs.db")
    holder, waiter = SqliteStore(path), SqliteStore(path)
    holder.setup()
    waiter._conn.execute("PRAGMA busy_timeout = 50")  # fail fast instead of after 5 s
    try:
        with holder.transaction(), pytest.raises(StoreBusy) as busy:
            waiter.rows(
                SQLITE_QUERIES["delete_job"], {"id": "00000000-0000-0000-0000-000000000000"}
            )
        assert isinstance(busy.value, SQLiteBackend.unavailable)
        with pytest.raises(sqlite3.OperationalError) as broken, waiter.transaction():
            waiter._conn.execute("SELECT * FROM no_such_table")
        assert not isinstance(broken.value, SQLiteBackend.unavailable)
    finally:
        holder.close()
        waiter.close()


async def test_a_task_cannot_join_another_tasks_open_transaction() -> None:
    app = Soniq(backend="memory", enqueue_validation="none")
    opened, release = anyio.Event(), anyio.Event()

    async def holds_a_transaction() -> None:
        async with app.backend.transaction():
            opened.set()
            await release.wait()  # suspends inside the transaction: not allowed

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(holds_a_transaction)
        await opened.wait()
        with pytest.raises(RuntimeError, match="another asyncio task"):
            await app.enqueue("jobs.anything")
        release.set()
    assert await app.list_jobs() == []  # nothing slipped into the other transaction
    await app.enqueue("jobs.anything")  # and the store works once it has ended
    assert len(await app.list_jobs()) == 1


async def test_a_time_at_the_end_of_the_calendar_reads_back() -> None:
    app = Soniq(backend="memory", enqueue_validation="none")
    never = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)
    job_id = await app.schedule("jobs.someday", never)
    job = await app.get_job(job_id)
    assert job is not None and job["scheduled_at"].year == 9999


# --------------------------------------------------------------------------- the CLI


@pytest.mark.parametrize(
    "command", [["setup"], ["status"], ["jobs", "list"], ["worker"], ["scheduler"]]
)
def test_commands_refuse_the_memory_backend(command: list[str], tmp_path: Path) -> None:
    (tmp_path / "memjobs.py").write_text("from soniq import Soniq\napp = Soniq()\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SONIQ_")}
    env.update(SONIQ_BACKEND="memory", SONIQ_JOBS_MODULES="memjobs", PYTHONPATH=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "soniq", *command],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and NOT_SUPPORTED_BY_BACKEND in lines[0], done.stderr
    assert "sqlite:///jobs.db" in lines[0]


def test_demo_with_a_bad_sqlite_url_says_so_in_one_line() -> None:
    result = CliRunner().invoke(main, ["demo", "--database-url", "sqlite://"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and INVALID_DATABASE_URL in lines[0], result.output
