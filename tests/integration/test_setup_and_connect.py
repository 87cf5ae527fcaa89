"""`soniq setup`, app.setup(), and what happens when the database is missing or wrong."""

from __future__ import annotations

import os
import subprocess
import sys

import anyio
import psycopg
import pytest

from soniq import Concurrency, Soniq, SoniqError
from soniq.storage.queries import Query, migration_files

TABLES = {
    "soniq_jobs",
    "soniq_workers",
    "soniq_dead_letter_jobs",
    "soniq_recurring_jobs",
    "soniq_migrations",
    "soniq_stats",
    "soniq_task_registry",
    "soniq_webhook_endpoints",
    "soniq_webhook_deliveries",
    "soniq_queues",
    "soniq_limit_groups",
    "soniq_limit_keys",
    "soniq_instance",
}
#: Every migration this Soniq ships, in order.
SHIPPED = [version for version, _ in migration_files()]


def test_migrations_are_numbered_in_order() -> None:
    assert SHIPPED[:3] == ["0001_initial", "0002_recurring", "0003_operations"]
    assert "0005_due_and_stats" in SHIPPED
    assert [v[:4] for v in SHIPPED] == [f"{n:04d}" for n in range(1, len(SHIPPED) + 1)]


async def soniq_tables(url: str) -> set[str]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'soniq_%'"
        )
        return {row[0] for row in await cur.fetchall()}


async def test_setup_creates_every_table_then_is_a_no_op(empty_database_url: str) -> None:
    async with Soniq(database_url=empty_database_url) as app:
        assert await app.setup() == SHIPPED
        assert await soniq_tables(empty_database_url) == TABLES
        assert await app.setup() == []


async def test_concurrent_setups_apply_each_migration_once(empty_database_url: str) -> None:
    results: list[list[str]] = []

    async def one() -> None:
        results.append(await Soniq(database_url=empty_database_url).setup())

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(one)
    assert sorted(results) == [
        [],
        [],
        [],
        [],
        SHIPPED,
    ]
    async with await psycopg.AsyncConnection.connect(empty_database_url) as conn:
        cur = await conn.execute("SELECT count(*) FROM soniq_migrations")
        assert await cur.fetchone() == (len(SHIPPED),)


async def test_claim_index_covers_only_queued_rows_that_are_due(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'soniq_jobs_claim_idx'"
        )
        row = await cur.fetchone()
    assert row is not None
    # Limited jobs (limit_key set) have an index of their own (migration 0010).
    assert "WHERE ((status = 'queued'::text) AND (NOT delayed) AND (limit_key IS NULL))" in row[0]


async def test_use_before_setup_says_to_run_setup(empty_database_url: str) -> None:
    async with Soniq(database_url=empty_database_url, enqueue_validation="none") as app:
        with pytest.raises(SoniqError) as err:
            await app.enqueue("reports.daily", args={})
    assert err.value.code == "SONIQ_SCHEMA_MISSING"
    assert "soniq setup" in err.value.message
    assert await soniq_tables(empty_database_url) == set()


async def test_unreachable_server_names_host_and_port() -> None:
    app = Soniq(database_url="postgresql://postgres@127.0.0.1:1/nowhere", connect_timeout=2)
    with pytest.raises(SoniqError) as err:
        await app.ensure_initialized()
    assert err.value.code == "SONIQ_DATABASE_UNREACHABLE"
    assert "127.0.0.1:1" in err.value.message
    assert "password" not in err.value.message


@pytest.mark.parametrize(
    "url",
    [
        "mysql://root@localhost/db",
        "not a url at all",
        "",
        "postgresql://h/db?sslmode=bogus&=x",
        "postgresql://h:port/db",
    ],
)
def test_bad_database_url_is_rejected_at_construction(url: str) -> None:
    with pytest.raises(SoniqError) as err:
        Soniq(database_url=url)
    assert err.value.code == "SONIQ_INVALID_DATABASE_URL"


def test_sqlalchemy_style_url_is_accepted() -> None:
    app = Soniq(database_url="postgresql+asyncpg://u@localhost:5432/db")
    assert app.backend.url == "postgresql://u@localhost:5432/db"


async def test_missing_url_says_how_to_set_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SONIQ_DATABASE_URL", raising=False)
    app = Soniq()
    with pytest.raises(SoniqError) as err:
        await app.setup()
    assert err.value.code == "SONIQ_DATABASE_URL_MISSING"
    assert "set SONIQ_DATABASE_URL" in err.value.message
    assert "run `soniq dev`" in err.value.message
    assert "\n" not in err.value.message


async def test_url_comes_from_environment(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SONIQ_DATABASE_URL", database_url)
    async with Soniq() as app:
        await app.ensure_initialized()
        assert await app.get_queue_stats_by_queue() == []
        assert (await app.get_queue_stats())["total"] == 0


def run_cli(*args: str, url: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SONIQ_")}
    if url is not None:
        env["SONIQ_DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "soniq", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_setup_is_idempotent(empty_database_url: str) -> None:
    first = run_cli("setup", url=empty_database_url)
    assert first.returncode == 0, first.stderr
    assert "0001_initial" in first.stdout
    second = run_cli("setup", url=empty_database_url)
    assert second.returncode == 0, second.stderr
    assert "up to date" in second.stdout


def test_cli_setup_errors_are_one_line_without_traceback() -> None:
    result = run_cli("setup", url="postgresql://postgres@127.0.0.1:1/x")
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "SONIQ_DATABASE_UNREACHABLE" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_setup_without_url_says_what_to_set() -> None:
    result = run_cli("setup", url=None)
    assert result.returncode == 1
    assert "SONIQ_DATABASE_URL" in result.stderr


def test_cli_version() -> None:
    result = run_cli("--version", url=None)
    assert result.returncode == 0
    assert "soniq" in result.stdout


async def test_callers_connection_without_the_schema_says_to_run_setup(
    empty_database_url: str,
) -> None:
    import asyncpg

    app = Soniq(enqueue_validation="none")
    async with await psycopg.AsyncConnection.connect(empty_database_url) as conn:
        with pytest.raises(SoniqError) as err:
            await app.enqueue("reports.daily", args={}, connection=conn)
    assert err.value.code == "SONIQ_SCHEMA_MISSING"
    pg = await asyncpg.connect(empty_database_url)
    try:
        with pytest.raises(SoniqError) as err:
            await app.enqueue_many("reports.daily", [{}], connection=pg)
    finally:
        await pg.close()
    assert err.value.code == "SONIQ_SCHEMA_MISSING"


async def test_upgrading_to_0005_marks_waiting_jobs_delayed(empty_database_url: str) -> None:
    # A database that an older Soniq set up and used: migrations up to 0004 only.
    async with await psycopg.AsyncConnection.connect(empty_database_url, autocommit=True) as conn:
        await conn.execute(
            "CREATE TABLE soniq_migrations (version text PRIMARY KEY, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for version, text in migration_files():
            if version >= "0005":
                break
            await conn.execute(text.encode())
            await conn.execute("INSERT INTO soniq_migrations (version) VALUES (%s)", (version,))
        await conn.execute(
            """INSERT INTO soniq_jobs (id, job_name, scheduled_at) VALUES
               (gen_random_uuid(), 'old.later', now() + interval '1 hour'),
               (gen_random_uuid(), 'old.now', now() - interval '1 minute')"""
        )
    async with Soniq(database_url=empty_database_url, enqueue_validation="none") as app:
        assert await app.setup() == [v for v in SHIPPED if v >= "0005"]
        [queue] = (await app.status())["queues"]
        assert (queue["runnable"], queue["scheduled"]) == (1, 1)
        ran: list[str] = []

        @app.job(name="old.now")
        async def now() -> None:
            ran.append("now")

        @app.job(name="old.later")
        async def later() -> None:
            ran.append("later")

        assert await app.run_worker(run_once=True) is True
        assert ran == ["now"]
    async with await psycopg.AsyncConnection.connect(empty_database_url) as conn:
        cur = await conn.execute("SELECT job_name, delayed FROM soniq_jobs ORDER BY job_name")
        assert await cur.fetchall() == [("old.later", True), ("old.now", False)]


async def test_the_worker_pool_keeps_the_server_options_of_the_url_and_pgoptions(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker's pool adds its own options; the caller's must survive: a statement
    # timeout, or the isolation level the limited claim checks.
    probe = "SELECT current_setting('statement_timeout'), current_setting('synchronous_commit')"
    monkeypatch.setenv("PGOPTIONS", "-c statement_timeout=1234")
    url_options = (
        database_url
        + ("&" if "?" in database_url else "?")
        + ("options=-c%20statement_timeout%3D777")
    )
    for url, expected in ((database_url, "1234ms"), (url_options, "777ms")):
        async with Soniq(database_url=url) as app:
            await app.ensure_initialized()
            worker_backend = app.backend.for_worker()
            await worker_backend.open()
            try:
                assert await worker_backend.rows(_query(probe), {}) == [(expected, "off")]
            finally:
                await worker_backend.close()


def _query(sql: str) -> Query:
    return Query(name="probe", text=sql)


async def test_upgrading_from_0010_keeps_keyed_jobs_claimable_and_adds_queue_limits(
    empty_database_url: str,
) -> None:
    # A database that the previous release set up: keyed limits (0010), no queue limits.
    async with await psycopg.AsyncConnection.connect(empty_database_url, autocommit=True) as conn:
        await conn.execute(
            "CREATE TABLE soniq_migrations (version text PRIMARY KEY, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for version, text in migration_files():
            if version >= "0011":
                break
            await conn.execute(text.encode())
            await conn.execute("INSERT INTO soniq_migrations (version) VALUES (%s)", (version,))
        await conn.execute(
            """INSERT INTO soniq_jobs (id, job_name, args, limit_key) VALUES
               (gen_random_uuid(), 'old.keyed', '{"n": 1}', 'old.keyed:1'),
               (gen_random_uuid(), 'old.keyed', '{"n": 2}', 'old.keyed:2')"""
        )
    async with Soniq(database_url=empty_database_url) as app:
        ran: list[int] = []

        @app.job(name="old.keyed", concurrency=Concurrency(1, key="{n}"))
        async def keyed(n: int) -> None:
            ran.append(n)

        assert await app.setup() == [v for v in SHIPPED if v >= "0011"]
        await app.queues.set_limits("default", concurrency=5)
        assert await app.run_worker(run_once=True) is True
        assert sorted(ran) == [1, 2]
        [info] = [q for q in await app.queues.list() if q.name == "default"]
        assert info.concurrency == 5
