"""`soniq jobs` and `soniq dead-letter` through click's CliRunner, on a real database."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result

import soniq_sync
from soniq.cli import dead_letter as dead_letter_cli
from soniq.cli import main
from soniq.cli.when import parse_when
from soniq.errors import SoniqError
from tests.integration.test_dead_letter import bury

NOW = datetime.now(timezone.utc)


@pytest.fixture
def cli(database_url: str) -> Any:
    """``cli("jobs", "list", ...)``: run a command against the test database."""
    runner = CliRunner()

    def invoke(*args: str, stdin: str | None = None) -> Result:
        return runner.invoke(
            main, list(args), input=stdin, env={"SONIQ_DATABASE_URL": database_url}
        )

    return invoke


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def error(result: Result, code: str) -> str:
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"soniq: error: {code}: "), line
    return line


def enqueue(sync_app: soniq_sync.Soniq, n: int = 1, **options: Any) -> list[str]:
    return [sync_app.enqueue("ops.task", args={"n": i}, **options) for i in range(n)]


@pytest.fixture
def sync_app(database_url: str) -> Any:
    app = soniq_sync.Soniq(database_url=database_url, enqueue_validation="none")
    try:
        yield app
    finally:
        app.close()


# --------------------------------------------------------------------------- jobs


def test_jobs_list_table_json_and_filters(cli: Any, sync_app: Any, database_url: str) -> None:
    a, b = enqueue(sync_app, 2)
    c = sync_app.enqueue("ops.other", args={}, queue="mail")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE soniq_jobs SET created_at = now() - interval '3 days' WHERE id = %s", (a,)
        )

    table = ok(cli("jobs", "list"))
    header, *rows = table.splitlines()
    assert header.split() == [
        "ID",
        "TASK",
        "QUEUE",
        "STATUS",
        "ATTEMPTS",
        "CREATED",
        "(UTC)",
        "LAST",
        "ERROR",
    ]
    assert [r.split()[0] for r in rows] == [c, b, a]
    assert rows[0].split()[1:5] == ["ops.other", "mail", "queued", "0/4"]

    listed = json.loads(ok(cli("jobs", "list", "--json", "--since", "1d")))
    assert [j["id"] for j in listed] == [c, b]
    assert listed[0]["created_at"].endswith("+00:00")
    assert [j["id"] for j in json.loads(ok(cli("jobs", "list", "--json", "--until", "2d")))] == [a]
    assert [j["id"] for j in json.loads(ok(cli("jobs", "list", "--json", "--queue", "mail")))] == [
        c
    ]
    named = json.loads(ok(cli("jobs", "list", "--json", "--name", "ops.task", "--limit", "1")))
    assert [j["id"] for j in named] == [b]
    assert [j["id"] for j in json.loads(ok(cli("jobs", "list", "--json", "--offset", "2")))] == [a]
    assert json.loads(ok(cli("jobs", "list", "--json", "--status", "done"))) == []
    assert ok(cli("jobs", "list", "--status", "done")) == "No jobs match.\n"

    error(cli("jobs", "list", "--status", "dead"), "SONIQ_INVALID_ARGUMENT")
    error(cli("jobs", "list", "--since", "yesterday"), "SONIQ_INVALID_ARGUMENT")
    error(cli("jobs", "list", "--limit", "-1"), "SONIQ_INVALID_ARGUMENT")


def test_jobs_list_pages_with_before(cli: Any, sync_app: Any) -> None:
    ids = enqueue(sync_app, 5)
    first = cli("jobs", "list", "--limit", "2")
    assert [r.split()[0] for r in ok(first).splitlines()[1:]] == [ids[4], ids[3]]
    assert first.stderr == f"Next page: add --before {ids[3]}\n"
    second = cli("jobs", "list", "--json", "--limit", "2", "--before", ids[3])
    assert [j["id"] for j in json.loads(ok(second))] == [ids[2], ids[1]]
    last = cli("jobs", "list", "--limit", "2", "--before", ids[1])
    assert [r.split()[0] for r in ok(last).splitlines()[1:]] == [ids[0]]
    assert last.stderr == ""  # not a full page: nothing follows
    assert ok(cli("jobs", "list", "--before", ids[0])) == "No jobs match.\n"
    error(cli("jobs", "list", "--before", "not-an-id"), "SONIQ_INVALID_JOB_ID")


def test_jobs_show(cli: Any, sync_app: Any, database_url: str) -> None:
    [job_id] = enqueue(sync_app)
    text = ok(cli("jobs", "show", job_id))
    assert f"id                   {job_id}" in text
    assert "status               queued" in text
    assert "progress             -" in text
    shown = json.loads(ok(cli("jobs", "show", job_id, "--json")))
    assert (shown["id"], shown["args"], shown["cancel_requested_at"]) == (job_id, {"n": 0}, None)
    assert shown["progress"] is None
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            'UPDATE soniq_jobs SET progress = \'{"current": 3, "total": 4}\' WHERE id = %s',
            (job_id,),
        )
    # (jsonb keeps keys shortest first.)
    assert 'progress             {"total": 4, "current": 3}' in ok(cli("jobs", "show", job_id))
    shown = json.loads(ok(cli("jobs", "show", job_id, "--json")))
    assert shown["progress"] == {"current": 3, "total": 4}
    error(cli("jobs", "show", str(uuid.uuid4())), "SONIQ_JOB_NOT_FOUND")
    error(cli("jobs", "show", "12"), "SONIQ_INVALID_JOB_ID")


def test_jobs_cancel(cli: Any, sync_app: Any, database_url: str) -> None:
    queued, running, done = enqueue(sync_app, 3)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE soniq_jobs SET status = 'processing', attempts = 1, worker_id = "
            "gen_random_uuid() WHERE id = %s",
            (running,),
        )
        conn.execute("UPDATE soniq_jobs SET status = 'done' WHERE id = %s", (done,))

    assert ok(cli("jobs", "cancel", queued)) == f"Cancelled queued job {queued}.\n"
    assert sync_app.get_job(queued)["status"] == "cancelled"
    assert ok(cli("jobs", "cancel", queued)) == f"Job {queued} was already cancelled.\n"
    assert "Asked the worker running job" in ok(cli("jobs", "cancel", running))
    assert sync_app.get_job(running)["cancel_requested_at"] is not None
    assert json.loads(ok(cli("jobs", "cancel", running, "--json"))) == {
        "id": running,
        "status": "processing",
        "requested": True,
    }
    line = error(cli("jobs", "cancel", done), "SONIQ_JOB_NOT_CANCELLABLE")
    assert "is done" in line
    error(cli("jobs", "cancel", str(uuid.uuid4())), "SONIQ_JOB_NOT_FOUND")


def test_jobs_retry(cli: Any, sync_app: Any, database_url: str) -> None:
    [cancelled, fresh] = enqueue(sync_app, 2)
    sync_app.cancel_job(cancelled)
    assert ok(cli("jobs", "retry", cancelled)) == f"Job {cancelled} is queued and due now.\n"
    assert sync_app.get_job(cancelled)["status"] == "queued"
    [dead] = bury(database_url)
    out = json.loads(ok(cli("jobs", "retry", dead, "--json")))
    assert out["retried"] == dead and sync_app.get_job(out["id"])["status"] == "queued"
    assert "Replayed dead-lettered job" in ok(cli("jobs", "retry", dead))
    line = error(cli("jobs", "retry", fresh), "SONIQ_JOB_NOT_RETRYABLE")
    assert "has not failed yet" in line
    error(cli("jobs", "retry", str(uuid.uuid4())), "SONIQ_JOB_NOT_FOUND")
    error(cli("jobs", "retry", "not-an-id"), "SONIQ_INVALID_JOB_ID")
    # An id typed in capitals is the same job: requeued in place, not "replayed".
    sync_app.cancel_job(cancelled)
    upper = cancelled.upper()
    assert ok(cli("jobs", "retry", upper)) == f"Job {cancelled} is queued and due now.\n"


def test_a_database_error_is_one_line(cli: Any, database_url: str) -> None:
    """Server errors carry DETAIL and CONTEXT lines; the command prints the first."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP TABLE soniq_workers")
    result = cli("workers")
    assert result.exit_code == 1, result.output
    [line] = result.stderr.splitlines()
    assert line.startswith("soniq: error: ") and "soniq_workers" in line, line


# --------------------------------------------------------------------------- dead-letter


def test_dead_letter_list_and_show(cli: Any, database_url: str) -> None:
    old = bury(database_url, job_name="a.one", at=NOW - timedelta(days=3))
    new = bury(database_url, job_name="a.two", queue="mail", last_error="Timeout: 50% used")
    header, *rows = ok(cli("dead-letter", "list")).splitlines()
    assert header.split()[:4] == ["ID", "TASK", "QUEUE", "ATTEMPTS"]
    assert [r.split()[0] for r in rows] == new + old

    def ids(*args: str) -> list[str]:
        return [r["id"] for r in json.loads(ok(cli("dead-letter", "list", "--json", *args)))]

    assert ids("--name", "a.one") == old
    assert ids("--queue", "mail") == new
    assert ids("--reason", "50%") == new
    assert ids("--since", "2d") == new
    assert ids("--until", "2d") == old
    assert ids("--limit", "1", "--offset", "1") == old
    assert ok(cli("dead-letter", "list", "--name", "nope")) == "No dead letters match.\n"
    error(cli("dead-letter", "list", "--since", "2 days"), "SONIQ_INVALID_ARGUMENT")

    text = ok(cli("dead-letter", "show", old[0]))
    assert "traceback" in text and "Traceback (most recent call last):" in text
    assert json.loads(ok(cli("dead-letter", "show", old[0], "--json")))["job_name"] == "a.one"
    error(cli("dead-letter", "show", str(uuid.uuid4())), "SONIQ_JOB_NOT_FOUND")


def test_dead_letter_replay_one_filtered_or_all(cli: Any, sync_app: Any, database_url: str) -> None:
    [single] = bury(database_url, job_name="r.one")
    bury(database_url, 3, job_name="r.many")
    bury(database_url, 2, job_name="r.rest")

    out = ok(cli("dead-letter", "replay", single))
    assert out.startswith(f"Replayed {single} as new job ")
    replayed = json.loads(
        ok(cli("dead-letter", "replay", "--name", "r.many", "--limit", "2", "--json"))
    )
    assert replayed["replayed"] == 2 and len(replayed["ids"]) == 2
    assert ok(cli("dead-letter", "replay", "--all")) == "Replayed 6 dead letter(s).\n"
    assert len(sync_app.list_jobs()) == 1 + 2 + 6

    error(cli("dead-letter", "replay"), "SONIQ_INVALID_ARGUMENT")
    error(cli("dead-letter", "replay", single, "--all"), "SONIQ_INVALID_ARGUMENT")
    error(cli("dead-letter", "replay", "--all", "--name", "r.one"), "SONIQ_INVALID_ARGUMENT")
    error(cli("dead-letter", "replay", str(uuid.uuid4())), "SONIQ_JOB_NOT_FOUND")


def test_dead_letter_purge(
    cli: Any, sync_app: Any, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bury(database_url, 2, job_name="p.old", at=NOW - timedelta(days=40))
    bury(database_url, 3, job_name="p.new")

    error(cli("dead-letter", "purge"), "SONIQ_FILTER_REQUIRED")
    error(cli("dead-letter", "purge", "--all", "--name", "p.new"), "SONIQ_INVALID_ARGUMENT")
    assert sync_app.dead_letter.count() == 5

    # On a terminal it asks first; "n" deletes nothing.
    monkeypatch.setattr(dead_letter_cli, "interactive", lambda: True)
    refused = cli("dead-letter", "purge", "--until", "30d", stdin="n\n")
    assert refused.exit_code == 1
    assert "Delete 2 dead letter(s) for good? [y/N]" in refused.stderr
    assert sync_app.dead_letter.count() == 5
    assert ok(cli("dead-letter", "purge", "--until", "30d", stdin="y\n")) == (
        "Deleted 2 dead letter(s).\n"
    )
    assert ok(cli("dead-letter", "purge", "--name", "nope")) == (
        "No dead letters match; nothing to delete.\n"
    )
    # --yes never asks
    assert json.loads(ok(cli("dead-letter", "purge", "--all", "--yes", "--json"))) == {"deleted": 3}
    assert sync_app.dead_letter.count() == 0


def test_dead_letter_export_purge_import(
    cli: Any, sync_app: Any, database_url: str, tmp_path: Path
) -> None:
    bury(database_url, 3, job_name="e.keep")
    bury(database_url, 2, job_name="e.other")
    before = sync_app.dead_letter.list()

    exported = cli("dead-letter", "export")  # to stdout
    lines = ok(exported).splitlines()
    assert len(lines) == 5 and json.loads(lines[0])["id"] == before[0]["id"]
    assert "Exported 5 dead letter(s) to standard output." in exported.stderr

    path = tmp_path / "dl.jsonl"
    result = cli("dead-letter", "export", "--name", "e.keep", "-o", str(path))
    assert result.exit_code == 0 and result.stdout == ""
    assert len(path.read_text().splitlines()) == 3

    ok(cli("dead-letter", "purge", "--all", "--yes"))
    assert ok(cli("dead-letter", "import", "-", stdin="\n".join(lines) + "\n")) == (
        "Imported 5 dead letter(s); skipped 0 already present.\n"
    )
    assert sync_app.dead_letter.list() == before
    assert json.loads(ok(cli("dead-letter", "import", str(path), "--json"))) == {
        "imported": 0,
        "skipped": 3,
    }

    bad = tmp_path / "bad.jsonl"
    bad.write_text(lines[0] + "\n" + lines[1][:-1] + "\n")
    ok(cli("dead-letter", "purge", "--all", "--yes"))
    line = error(cli("dead-letter", "import", str(bad)), "SONIQ_INVALID_EXPORT")
    assert "Line 2" in line
    assert sync_app.dead_letter.count() == 0
    missing = cli("dead-letter", "import", str(tmp_path / "missing.jsonl"))
    assert "No such file or directory" in error(missing, "SONIQ_INVALID_ARGUMENT")
    unwritable = cli("dead-letter", "export", "-o", str(tmp_path / "no" / "such" / "dir"))
    assert "Cannot write" in error(unwritable, "SONIQ_INVALID_ARGUMENT")


def test_an_unreachable_database_is_one_line(database_url: str) -> None:
    result = CliRunner().invoke(
        main,
        ["jobs", "list", "--database-url", "postgresql://postgres@127.0.0.1:1/nope"],
    )
    error(result, "SONIQ_DATABASE_UNREACHABLE")


# --------------------------------------------------------------------------- --since


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("1h30m", timedelta(minutes=90)),
        (" 2H ", timedelta(hours=2)),
    ],
)
def test_relative_times_count_back_from_now(text: str, expected: timedelta) -> None:
    assert parse_when(text, "--since", now=NOW) == NOW - expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01", datetime(2024, 5, 1, tzinfo=timezone.utc)),
        ("2024-05-01T09:30", datetime(2024, 5, 1, 9, 30, tzinfo=timezone.utc)),
        ("2024-05-01 09:30:00+02:00", datetime(2024, 5, 1, 7, 30, tzinfo=timezone.utc)),
        ("2024-05-01T09:30:00Z", datetime(2024, 5, 1, 9, 30, tzinfo=timezone.utc)),
    ],
)
def test_iso_times_are_utc_unless_they_say_otherwise(text: str, expected: datetime) -> None:
    assert parse_when(text, "--since") == expected


@pytest.mark.parametrize("text", ["", "2", "h", "2 h", "-2h", "2y", "yesterday", "99999999999d"])
def test_bad_times_are_refused(text: str) -> None:
    with pytest.raises(SoniqError) as info:
        parse_when(text, "--until")
    assert info.value.code == "SONIQ_INVALID_ARGUMENT"
    assert "--until" in info.value.message
