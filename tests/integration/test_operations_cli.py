"""soniq status, workers, tasks check, migrate status and prune through click's CliRunner,
against real PostgreSQL (tests/acceptance runs them as real processes too)."""

from __future__ import annotations

import json
import uuid
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result

from soniq import app_base
from soniq.cli import main, worker_app
from soniq.storage.queries import migration_files

UNREACHABLE = "postgresql://postgres@127.0.0.1:1/nowhere"


def sql(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def soniq(*args: str, **env: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def add_jobs(url: str, n: int, *, status: str = "queued", name: str = "cli.job", **extra: str):
    """``n`` rows as Soniq leaves them: a running one is held by a worker (``worker_id``)."""
    finished = extra.get("finished", "0 seconds")
    sql(
        url,
        """INSERT INTO soniq_jobs (id, job_name, status, finished_at, worker_id)
           SELECT gen_random_uuid(), %s, %s, now() - %s::interval,
                  CASE WHEN %s = 'processing' THEN gen_random_uuid() END
           FROM generate_series(1, %s)""",
        name,
        status,
        finished,
        status,
        n,
    )


def jobs_count(url: str) -> int:
    return int(sql(url, "SELECT count(*) FROM soniq_jobs")[0][0])


def one_error_line(result: Result, code: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"soniq: error: {code}:"), result.stderr


# -- soniq status -------------------------------------------------------------------


def test_status_table_and_json(database_url: str) -> None:
    add_jobs(database_url, 3)
    add_jobs(database_url, 2, status="done")
    # Finished figures are what workers reported: two done jobs this minute.
    sql(
        database_url,
        """INSERT INTO soniq_stats (minute, queue, job_name, done)
           VALUES (date_trunc('minute', now()), 'default', 'cli.job', 2)""",
    )
    sql(
        database_url,
        """INSERT INTO soniq_workers (id, hostname, pid, concurrency)
           VALUES (gen_random_uuid(), 'box', 1, 4)""",
    )
    table = soniq("status", "--database-url", database_url)
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["QUEUE", "RUNNABLE", "SCHEDULED"]
    assert lines[1].split()[:6] == ["default", "3", "0", "0", "2", "0"]
    assert lines[-1] == "Workers: 1 live."

    as_json = soniq("status", "--json", SONIQ_DATABASE_URL=database_url)
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.stdout)
    assert report["workers"] == 1
    assert [(q["queue"], q["runnable"], q["done"]) for q in report["queues"]] == [("default", 3, 2)]


def test_status_of_an_unreachable_database() -> None:
    one_error_line(soniq("status", "--database-url", UNREACHABLE), "SONIQ_DATABASE_UNREACHABLE")


def test_status_of_an_empty_schema_says_run_setup(empty_database_url: str) -> None:
    result = soniq("status", "--database-url", empty_database_url)
    one_error_line(result, "SONIQ_SCHEMA_MISSING")
    assert "soniq setup" in result.stderr


# -- soniq workers ------------------------------------------------------------------


def test_workers_table_and_json(database_url: str) -> None:
    sql(
        database_url,
        """INSERT INTO soniq_workers (id, hostname, pid, queues, concurrency, last_heartbeat)
           VALUES ('00000000-0000-0000-0000-00000000000a', 'fresh', 11, '{a,b}', 4, now()),
                  ('00000000-0000-0000-0000-00000000000b', 'silent', 22, NULL, 2,
                   now() - interval '1 hour')""",
    )
    table = soniq("workers", "--database-url", database_url)
    assert table.exit_code == 0, table.output
    rows = [line.split() for line in table.stdout.splitlines()[1:]]
    assert [(r[1], r[2], r[3], r[-2], r[-1]) for r in rows] == [
        ("fresh", "11", "a,b", "no", "0"),
        ("silent", "22", "(all)", "yes", "0"),
    ]
    as_json = soniq("workers", "--json", "--database-url", database_url)
    workers = json.loads(as_json.stdout)
    assert [(w["hostname"], w["stale"]) for w in workers] == [("fresh", False), ("silent", True)]


def test_workers_when_there_are_none(database_url: str) -> None:
    result = soniq("workers", "--database-url", database_url)
    assert (result.exit_code, result.stdout) == (0, "No workers registered.\n")
    assert json.loads(soniq("workers", "--json", "--database-url", database_url).stdout) == []


# -- soniq tasks check --------------------------------------------------------------


@pytest.fixture
def jobs_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A jobs module registering ``cli.known``, importable from the current directory.

    The apps other tests created must not join in, so the worker's app finder gets a
    registry of its own for this test.
    """
    name = f"cli_jobs_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "from soniq import Soniq\n\napp = Soniq()\n\n\n"
        "@app.job(name='cli.known')\nasync def known() -> None:\n    return None\n"
    )
    fresh: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
    monkeypatch.setattr(app_base, "INSTANCES", fresh)
    monkeypatch.setattr(worker_app, "INSTANCES", fresh)
    monkeypatch.chdir(tmp_path)
    yield name


def test_tasks_check_passes_when_every_name_is_registered(
    database_url: str, jobs_module: str
) -> None:
    add_jobs(database_url, 2, name="cli.known")
    add_jobs(database_url, 1, name="cli.finished", status="done")  # finished: no handler needed
    result = soniq(
        "tasks", "check", SONIQ_DATABASE_URL=database_url, SONIQ_JOBS_MODULES=jobs_module
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "Every task name in use is registered (1 registered).\n"


def test_tasks_check_reports_drift_with_exit_status_1(database_url: str, jobs_module: str) -> None:
    add_jobs(database_url, 2, name="cli.known")
    add_jobs(database_url, 3, name="cli.renamed")
    add_jobs(database_url, 1, name="cli.running", status="processing")
    env = {"SONIQ_DATABASE_URL": database_url, "SONIQ_JOBS_MODULES": jobs_module}
    table = soniq("tasks", "check", **env)
    assert table.exit_code == 1, table.output
    lines = table.stdout.splitlines()
    assert lines[0].startswith("2 task name(s) in the database have no registered handler")
    assert [line.split() for line in lines[2:]] == [
        ["cli.renamed", "3", "0", "0"],
        ["cli.running", "0", "1", "0"],
    ]
    as_json = soniq("tasks", "check", "--json", **env)
    assert as_json.exit_code == 1
    report = json.loads(as_json.stdout)
    assert report["registered"] == ["cli.known"]
    assert [d["job_name"] for d in report["unregistered"]] == ["cli.renamed", "cli.running"]


def test_tasks_check_takes_the_database_url_option(database_url: str, jobs_module: str) -> None:
    add_jobs(database_url, 1, name="cli.elsewhere")
    result = soniq(
        "tasks",
        "check",
        "--database-url",
        database_url,
        SONIQ_DATABASE_URL=UNREACHABLE,
        SONIQ_JOBS_MODULES=jobs_module,
    )
    assert result.exit_code == 1 and "cli.elsewhere" in result.stdout


def test_tasks_check_needs_jobs_modules(database_url: str) -> None:
    result = soniq("tasks", "check", SONIQ_DATABASE_URL=database_url, SONIQ_JOBS_MODULES="")
    one_error_line(result, "SONIQ_INVALID_ARGUMENT")
    assert "SONIQ_JOBS_MODULES" in result.stderr


def test_tasks_check_reports_a_module_that_does_not_import(
    database_url: str, jobs_module: str
) -> None:
    result = soniq(
        "tasks", "check", SONIQ_DATABASE_URL=database_url, SONIQ_JOBS_MODULES="no_such_module_x"
    )
    one_error_line(result, "SONIQ_JOBS_MODULE_IMPORT_FAILED")


# -- soniq migrate status -----------------------------------------------------------


def test_migrate_status_on_a_fresh_database_lists_everything_pending(
    empty_database_url: str,
) -> None:
    shipped = [version for version, _ in migration_files()]
    table = soniq("migrate", "status", "--database-url", empty_database_url)
    assert table.exit_code == 1, table.output
    rows = [line.split() for line in table.stdout.splitlines()[1:-1]]
    assert rows == [[version, "pending", "-"] for version in shipped]
    last = table.stdout.splitlines()[-1]
    assert last == f"{len(shipped)} migration(s) pending: run `soniq setup`."
    as_json = soniq("migrate", "status", "--json", "--database-url", empty_database_url)
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout) == {"applied": [], "pending": shipped, "unknown": []}


def test_migrate_status_on_a_migrated_database(database_url: str) -> None:
    shipped = [version for version, _ in migration_files()]
    table = soniq("migrate", "status", "--database-url", database_url)
    assert table.exit_code == 0, table.output
    rows = [line.split() for line in table.stdout.splitlines()[1:-1]]
    assert [(r[0], r[1]) for r in rows] == [(version, "applied") for version in shipped]
    assert table.stdout.splitlines()[-1] == "Schema is up to date."
    report = json.loads(soniq("migrate", "status", "--json", "--database-url", database_url).stdout)
    assert [m["version"] for m in report["applied"]] == shipped
    assert report["pending"] == []


def test_migrate_status_of_an_unreachable_database() -> None:
    one_error_line(
        soniq("migrate", "status", "--database-url", UNREACHABLE), "SONIQ_DATABASE_UNREACHABLE"
    )


# -- soniq prune --------------------------------------------------------------------


def test_prune_uses_the_retention_setting(database_url: str) -> None:
    add_jobs(database_url, 4, status="done", finished="2 hours")
    add_jobs(database_url, 2, status="cancelled", finished="30 minutes")
    add_jobs(database_url, 3)  # queued
    result = soniq("prune", SONIQ_DATABASE_URL=database_url)
    assert result.exit_code == 0, result.output
    assert result.stdout == "Deleted 4 finished job(s) that finished more than 1h00m ago.\n"
    assert jobs_count(database_url) == 5


def test_prune_older_than_and_json(database_url: str) -> None:
    add_jobs(database_url, 2, status="cancelled", finished="30 minutes")
    add_jobs(database_url, 1, status="done", finished="1 minute")  # inside the result TTL
    result = soniq("prune", "--older-than", "10m", "--json", SONIQ_DATABASE_URL=database_url)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"deleted": 2, "older_than_seconds": 600.0}
    # Below the result TTL (300 s by default), the TTL is what counts.
    result = soniq("prune", "--older-than", "0", "--json", SONIQ_DATABASE_URL=database_url)
    assert json.loads(result.stdout) == {"deleted": 0, "older_than_seconds": 300.0}
    assert jobs_count(database_url) == 1


@pytest.mark.parametrize("text", ["2x", "-1h", "soon", "1h30"])
def test_prune_rejects_a_bad_duration_and_deletes_nothing(database_url: str, text: str) -> None:
    add_jobs(database_url, 2, status="done", finished="2 hours")
    result = soniq("prune", "--older-than", text, SONIQ_DATABASE_URL=database_url)
    one_error_line(result, "SONIQ_INVALID_DURATION")
    assert jobs_count(database_url) == 2


def test_prune_with_retention_off(database_url: str) -> None:
    add_jobs(database_url, 2, status="done", finished="2 days")
    env = {"SONIQ_DATABASE_URL": database_url, "SONIQ_FINISHED_JOB_RETENTION": "off"}
    one_error_line(soniq("prune", **env), "SONIQ_RETENTION_OFF")
    assert jobs_count(database_url) == 2
    result = soniq("prune", "--older-than", "1d", **env)
    assert result.stdout == "Deleted 2 finished job(s) that finished more than 1d0h ago.\n"
