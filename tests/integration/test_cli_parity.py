"""The original Soniq's CLI spellings: dead-letter --dry-run and export formats,
migrate-status, and the worker's and scheduler's --jobs-modules, --log-level,
--database-url and --check-interval; through click's CliRunner on a real database."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import uuid
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result

import soniq.app_base
import soniq.cli.worker_app
import soniq_sync
from soniq.cli import main
from tests.integration.test_dead_letter import bury


def dead_letter_rows(url: str) -> list[tuple[Any, ...]]:
    """Every dead-letter row, every column, to compare before and after a dry run."""
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT * FROM soniq_dead_letter_jobs ORDER BY id").fetchall()


def job_count(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM soniq_jobs").fetchone()
        assert row is not None
        return int(row[0])


@pytest.fixture
def cli(database_url: str) -> Any:
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, list(args), env={"SONIQ_DATABASE_URL": database_url})

    return invoke


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


# ------------------------------------------------------------------ dead-letter --dry-run


def test_replay_dry_run_counts_and_samples_but_writes_nothing(cli: Any, database_url: str) -> None:
    ids = bury(database_url, 12, job_name="dry.replay")
    bury(database_url, 1, job_name="dry.other")
    before = dead_letter_rows(database_url)

    out = ok(cli("dead-letter", "replay", "--name", "dry.replay", "--dry-run"))
    assert out.startswith("Dry run: 12 dead letter(s) would be replayed; nothing was changed.")
    assert sum(1 for line in out.splitlines() if "dry.replay" in line) == 10
    assert "... and 2 more." in out
    report = json.loads(
        ok(cli("dead-letter", "replay", "--all", "--limit", "3", "--dry-run", "--json"))
    )
    assert report["would_be_replayed"] == 3 and len(report["sample"]) == 3
    one = json.loads(ok(cli("dead-letter", "replay", ids[0], "--dry-run", "--json")))
    assert (one["would_be_replayed"], one["sample"][0]["id"]) == (1, ids[0])

    assert dead_letter_rows(database_url) == before  # replay counts untouched
    assert job_count(database_url) == 0  # and no job queued
    # Without --dry-run the same command does replay: the check above could fail.
    assert "Replayed 12" in ok(cli("dead-letter", "replay", "--name", "dry.replay"))
    assert job_count(database_url) == 12


def test_a_dry_run_of_an_unknown_id_is_an_error(cli: Any) -> None:
    result = cli("dead-letter", "replay", str(uuid.uuid4()), "--dry-run")
    assert result.exit_code == 1
    assert "SONIQ_JOB_NOT_FOUND:" in result.stderr


def test_purge_dry_run_writes_nothing(cli: Any, database_url: str) -> None:
    bury(database_url, 3, job_name="dry.purge")
    before = dead_letter_rows(database_url)
    out = ok(cli("dead-letter", "purge", "--all", "--dry-run"))
    assert out.startswith("Dry run: 3 dead letter(s) would be deleted")
    assert dead_letter_rows(database_url) == before
    none = json.loads(ok(cli("dead-letter", "purge", "--name", "nope", "--dry-run", "--json")))
    assert none == {"dry_run": True, "would_be_deleted": 0, "sample": []}
    # A purge without a filter is refused even as a dry run.
    assert "SONIQ_FILTER_REQUIRED:" in cli("dead-letter", "purge", "--dry-run").stderr
    assert "Deleted 3" in ok(cli("dead-letter", "purge", "--all", "--yes"))
    assert dead_letter_rows(database_url) == []


# ------------------------------------------------------------------ dead-letter export


def test_export_formats(cli: Any, database_url: str, tmp_path: Path) -> None:
    ids = bury(database_url, 2, job_name="fmt.task")
    lines = ok(cli("dead-letter", "export")).splitlines()
    assert [json.loads(line)["id"] for line in lines] == ids[::-1]

    array = json.loads(ok(cli("dead-letter", "export", "--format", "json")))
    assert [row["id"] for row in array] == ids[::-1]
    assert array[0]["args"] == {"n": 2} and array == [json.loads(line) for line in lines]

    target = tmp_path / "dead.csv"
    ok(cli("dead-letter", "export", "--format", "csv", "--output", str(target)))
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert [row["id"] for row in rows] == ids[::-1]
    assert json.loads(rows[0]["args"]) == {"n": 2}
    assert rows[0]["last_resurrected_at"] == ""  # null is an empty field
    assert rows[0]["job_name"] == "fmt.task" and rows[0]["attempts"] == "4"

    # An empty export is still a well-formed file of its format.
    assert json.loads(ok(cli("dead-letter", "export", "--name", "x", "--format", "json"))) == []
    header = ok(cli("dead-letter", "export", "--name", "x", "--format", "csv"))
    assert header.startswith("id,job_name,args,")
    bad = cli("dead-letter", "export", "--format", "xml")
    assert bad.exit_code == 2 and "xml" in bad.stderr


def test_export_format_through_the_api(sync_app: soniq_sync.Soniq, database_url: str) -> None:
    bury(database_url, 1)
    buffer = io.StringIO()
    assert sync_app.dead_letter.export(buffer, format="json") == 1
    assert len(json.loads(buffer.getvalue())) == 1
    with pytest.raises(soniq.SoniqError) as caught:
        sync_app.dead_letter.export(io.StringIO(), format="yaml")  # type: ignore[arg-type]
    assert caught.value.code == "SONIQ_INVALID_ARGUMENT"


# ------------------------------------------------------------------ migrate-status


def test_migrate_status_is_an_alias(cli: Any, empty_database_url: str) -> None:
    assert ok(cli("migrate-status")) == ok(cli("migrate", "status"))
    pending = CliRunner().invoke(main, ["migrate-status", "--database-url", empty_database_url])
    assert pending.exit_code == 1 and "pending" in pending.stdout


# ------------------------------------------------------------------ worker and scheduler

JOBS_MODULE = """
import logging
from soniq import Soniq

app = Soniq({url})


@app.job(name="{name}")
async def job() -> None:
    logging.getLogger("parity").debug("ran at debug")
"""


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """tmp_path as the working directory; only this test's apps count."""
    monkeypatch.chdir(tmp_path)
    for name in ("SONIQ_DATABASE_URL", "SONIQ_JOBS_MODULES", "SONIQ_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    apps: weakref.WeakValueDictionary[int, soniq.app_base.AppBase] = weakref.WeakValueDictionary()
    monkeypatch.setattr(soniq.app_base, "INSTANCES", apps)
    monkeypatch.setattr(soniq.cli.worker_app, "INSTANCES", apps)
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("parity_jobs_"):
            sys.modules.pop(name, None)


def jobs_module(folder: Path, url: str | None = None) -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    module, task = f"parity_jobs_{suffix}", f"parity.job-{suffix}"
    (folder / f"{module}.py").write_text(
        JOBS_MODULE.format(name=task, url="" if url is None else repr(url))
    )
    return module, task


def enqueue(url: str, task: str) -> None:
    producer = soniq_sync.Soniq(url, enqueue_validation="none")
    try:
        producer.enqueue(task)
    finally:
        producer.close()


def done_count(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM soniq_jobs WHERE status = 'done'").fetchone()
        assert row is not None
        return int(row[0])


def test_worker_takes_jobs_modules_and_database_url_flags(
    isolated: Path, database_url: str
) -> None:
    module, task = jobs_module(isolated)
    enqueue(database_url, task)
    result = CliRunner().invoke(
        main,
        ["worker", "--run-once", "--jobs-modules", module, "--database-url", database_url],
    )
    assert result.exit_code == 0, (result.output, result.exception)
    assert done_count(database_url) == 1


def test_jobs_modules_are_merged_after_the_environment(
    isolated: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, task_a = jobs_module(isolated)
    second, task_b = jobs_module(isolated)
    monkeypatch.setenv("SONIQ_JOBS_MODULES", first)
    monkeypatch.setenv("SONIQ_DATABASE_URL", database_url)
    enqueue(database_url, task_a)
    enqueue(database_url, task_b)
    result = CliRunner().invoke(
        main, ["worker", "--run-once", "--jobs-modules", f"{second},{first}"]
    )
    assert result.exit_code == 0, (result.output, result.exception)
    assert done_count(database_url) == 2  # both modules' tasks ran: none dead-lettered


def test_worker_without_any_jobs_module_names_the_flag(isolated: Path) -> None:
    result = CliRunner().invoke(main, ["worker", "--run-once"])
    assert result.exit_code == 1
    assert "SONIQ_INVALID_ARGUMENT:" in result.stderr and "--jobs-modules" in result.stderr


def test_a_database_url_that_contradicts_the_app_is_refused(
    isolated: Path, database_url: str, empty_database_url: str
) -> None:
    module, _ = jobs_module(isolated, url=database_url)
    result = CliRunner().invoke(
        main,
        ["worker", "--run-once", "--jobs-modules", module, "--database-url", empty_database_url],
    )
    assert result.exit_code == 1
    assert "SONIQ_INVALID_SETTING:" in result.stderr and "--database-url" in result.stderr
    # The same database spelled another way is no contradiction.
    same = database_url.replace("postgresql://", "postgres://").replace(":5432/", "/")
    assert same != database_url
    ok_result = CliRunner().invoke(
        main, ["worker", "--run-once", "--jobs-modules", module, "--database-url", same]
    )
    assert ok_result.exit_code == 0, (ok_result.output, ok_result.exception)


def test_log_level_flag_is_checked_and_applied(isolated: Path, database_url: str) -> None:
    bad = CliRunner().invoke(main, ["worker", "--log-level", "LOUD"])
    assert bad.exit_code == 2 and "LOUD" in bad.stderr
    bad = CliRunner().invoke(main, ["scheduler", "--log-level", "LOUD"])
    assert bad.exit_code == 2
    module, task = jobs_module(isolated)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SONIQ_")}
    env["SONIQ_LOG_LEVEL"] = "WARNING"
    stderr = {}
    for level in ("debug", "WARNING"):
        enqueue(database_url, task)
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "soniq",
                "worker",
                "--run-once",
                "--log-level",
                level,
                "--jobs-modules",
                module,
                "--database-url",
                database_url,
            ],
            cwd=isolated,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        stderr[level] = proc.stderr
    # The flag wins over SONIQ_LOG_LEVEL=WARNING, in either case.
    assert "ran at debug" in stderr["debug"]
    assert "ran at debug" not in stderr["WARNING"]
    assert done_count(database_url) == 2


def test_scheduler_flags(isolated: Path, database_url: str) -> None:
    bad = CliRunner().invoke(main, ["scheduler", "--check-interval", "0"])
    assert bad.exit_code == 2 and "--check-interval" in bad.stderr
    listed = CliRunner().invoke(main, ["scheduler", "--list", "--database-url", database_url])
    assert listed.exit_code == 0, (listed.output, listed.exception)
    assert listed.stdout == "No schedules.\n"


# ------------------------------------------------------------------ inspect


def add_worker(url: str, *, silent_for: str, queues: list[str] | None = None) -> str:
    worker_id = str(uuid.uuid4())
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO soniq_workers (id, hostname, pid, queues, concurrency, last_heartbeat)"
            " VALUES (%s, 'host-a', 4242, %s, 3, now() - %s::interval)",
            (worker_id, queues, silent_for),
        )
    return worker_id


def test_inspect_reports_health_workers_and_schedules(cli: Any, database_url: str) -> None:
    add_worker(database_url, silent_for="1 second", queues=["mail"])
    add_worker(database_url, silent_for="2 hours")
    out = ok(cli("inspect"))
    assert out.splitlines()[0] == "Health: degraded. Workers: 1 live, 1 stale; total concurrency 3."
    assert "host-a:4242" in out and "mail" in out
    assert "Recurring schedules: 0 (0 active, 0 paused)." in out
    only_stale = json.loads(ok(cli("inspect", "--stale", "--json")))
    assert [w["stale"] for w in only_stale["workers"]] == [True]
    assert only_stale["health"] == "degraded"

    cleaned = ok(cli("inspect", "--cleanup"))
    assert cleaned.startswith("Recovered 1 stale worker(s)")
    assert "Health: healthy. Workers: 1 live, 0 stale" in cleaned
    assert json.loads(ok(cli("inspect", "--json")))["stale_workers"] == 0
