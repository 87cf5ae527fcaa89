"""PostgreSQL-only parity: setup() creates a missing database, `soniq setup` says how
to, the migration adds producer_id, and `soniq jobs show` prints it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest

import soniq_sync
from soniq import Soniq, SoniqError
from soniq.errors import DATABASE_MISSING, INVALID_DATABASE_NAME
from soniq.testing.pytest_plugin import TestServer
from tests.conftest import unique_name

pytestmark = pytest.mark.integration


def exists(server: TestServer, name: str) -> bool:
    with psycopg.connect(server.url, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        return found.fetchone() is not None


@pytest.fixture
def missing(pg_server: TestServer) -> Iterator[str]:
    """A database name no server has; dropped after the test if it got created."""
    name = unique_name("soniq_test_missing_")
    assert not exists(pg_server, name)
    try:
        yield name
    finally:
        pg_server.drop_database(name)


def cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SONIQ_")}
    env["SONIQ_DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "soniq", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_setup_creates_a_missing_database(pg_server: TestServer, missing: str) -> None:
    url = pg_server.url_for(missing)
    async with Soniq(database_url=url) as app:
        applied = await app.setup()
        assert applied[0] == "0001_initial" and "0006_producer_id" in applied
        assert exists(pg_server, missing)
        assert await app.setup() == []  # idempotent, and the database is not recreated

        @app.job()
        async def noop() -> None: ...

        job = await app.get_job(await app.enqueue(noop))
        assert job is not None and job["status"] == "queued"


def test_the_blocking_app_creates_it_too(pg_server: TestServer, missing: str) -> None:
    with soniq_sync.Soniq(database_url=pg_server.url_for(missing)) as app:
        assert "0006_producer_id" in app.setup()
        assert app.is_initialized is False  # setup() migrates; it does not open the pool
        assert app.get_queue_stats()["total"] == 0
        assert app.is_initialized is True
    assert exists(pg_server, missing)


async def test_create_database_false_says_how_and_creates_nothing(
    pg_server: TestServer, missing: str
) -> None:
    async with Soniq(database_url=pg_server.url_for(missing)) as app:
        with pytest.raises(SoniqError) as caught:
            await app.setup(create_database=False)
    assert caught.value.code == DATABASE_MISSING
    assert f"CREATE DATABASE {missing};" in caught.value.message
    assert not exists(pg_server, missing)


@pytest.mark.parametrize("name", ["bad-name", "1starts_with_digit", "dollar$sign", "x" * 64])
async def test_a_name_that_is_not_a_plain_identifier_is_never_created(
    pg_server: TestServer, name: str
) -> None:
    assert not exists(pg_server, name)
    async with Soniq(database_url=pg_server.url_for(name)) as app:
        with pytest.raises(SoniqError) as caught:
            await app.setup()
    assert caught.value.code == INVALID_DATABASE_NAME
    assert caught.value.details == {"database": name}
    assert not exists(pg_server, name)


def test_cli_setup_does_not_create_it_and_prints_the_command(
    pg_server: TestServer, missing: str
) -> None:
    result = cli("setup", url=pg_server.url_for(missing))
    assert result.returncode == 1
    assert "SONIQ_DATABASE_MISSING" in result.stderr
    assert "createdb " in result.stderr and result.stderr.rstrip().count("\n") == 0
    assert f"CREATE DATABASE {missing};" in result.stderr
    assert not exists(pg_server, missing)
    # Run what it says, and setup goes through.
    pg_server.execute("create_empty_database", database=missing)
    again = cli("setup", url=pg_server.url_for(missing))
    assert again.returncode == 0, again.stderr
    assert "0006_producer_id" in again.stdout


def test_jobs_show_prints_the_producer_id(database_url: str) -> None:
    with soniq_sync.Soniq(
        database_url=database_url, producer_id="web-7", enqueue_validation="none"
    ) as app:
        job_id = app.enqueue("parity.remote", args={"n": 1})
    shown = cli("jobs", "show", job_id, url=database_url)
    assert shown.returncode == 0, shown.stderr
    assert any(line.split() == ["producer_id", "web-7"] for line in shown.stdout.splitlines()), (
        shown.stdout
    )
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT producer_id FROM soniq_jobs WHERE id = %s", (job_id,))
        assert row.fetchone() == ("web-7",)


async def test_a_row_from_before_the_migration_has_no_producer(database_url: str) -> None:
    async with Soniq(database_url=database_url) as app:

        @app.job()
        async def noop() -> None: ...

        job_id = await app.enqueue(noop)
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("UPDATE soniq_jobs SET producer_id = NULL WHERE id = %s", (job_id,))
        job = await app.get_job(job_id)
        assert job is not None and job["producer_id"] is None
