"""app.dead_letter against real PostgreSQL: filters, bulk replay, purge, export/import."""

from __future__ import annotations

import io
import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

import soniq_sync
from soniq import Soniq, SoniqError
from soniq.errors import (
    FILTER_REQUIRED,
    INVALID_ARGUMENT,
    INVALID_EXPORT,
    INVALID_JOB_ID,
    JOB_NOT_FOUND,
    NAIVE_DATETIME,
)
from soniq.ops.dead_letter_file import COLUMNS, ImportResult

NOW = datetime.now(timezone.utc)


def bury(url: str, count: int = 1, **columns: Any) -> list[str]:
    """Insert ``count`` dead letters (one statement); return their ids, oldest first.

    ``at`` sets dead_lettered_at of the first; each next one is a second later.
    """
    at = columns.pop("at", NOW - timedelta(hours=1))
    ids = [str(uuid.uuid4()) for _ in range(count)]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO soniq_dead_letter_jobs (id, job_name, args, queue, priority, attempts,"
            " max_attempts, reason, last_error, traceback, original_created_at, started_at,"
            " dead_lettered_at) "
            "SELECT id, %(job_name)s, jsonb_build_object('n', n), %(queue)s, 100, 4, 4,"
            " %(reason)s, %(last_error)s, %(traceback)s, %(at)s::timestamptz - interval '1 day',"
            " %(at)s::timestamptz - interval '1 minute',"
            " %(at)s::timestamptz + make_interval(secs => n - 1) "
            "FROM unnest(%(ids)s::uuid[]) WITH ORDINALITY AS t(id, n)",
            {
                "ids": ids,
                "at": at,
                "job_name": columns.get("job_name", "billing.send"),
                "queue": columns.get("queue", "default"),
                "reason": columns.get("reason", "Failed all 4 attempts."),
                "last_error": columns.get("last_error", "RuntimeError: card declined"),
                "traceback": columns.get("traceback", "Traceback (most recent call last):\n"),
            },
        )
    return ids


def one(url: str, query: str, *params: Any) -> Any:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
        assert row is not None
        return row[0]


async def ids_of(records: list[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in records]


# --------------------------------------------------------------------------- list/count


async def test_list_filters_by_name_queue_reason_and_time(app: Soniq, database_url: str) -> None:
    old = bury(database_url, job_name="a.one", at=NOW - timedelta(days=3))
    mail = bury(
        database_url,
        job_name="a.two",
        queue="mail",
        reason="Job a.two not registered.",
        at=NOW - timedelta(hours=2),
    )
    card = bury(database_url, job_name="a.one", last_error="ValueError: Card Expired")

    assert await ids_of(await app.dead_letter.list()) == card + mail + old  # newest first
    assert await ids_of(await app.dead_letter.list(job_name="a.one")) == card + old
    assert await ids_of(await app.dead_letter.list(queue="mail")) == mail
    # reason: a case-insensitive substring of the reason or of the last error
    assert await ids_of(await app.dead_letter.list(reason="NOT REGISTERED")) == mail
    assert await ids_of(await app.dead_letter.list(reason="card expired")) == card
    assert await ids_of(await app.dead_letter.list(since=NOW - timedelta(days=1))) == card + mail
    assert await ids_of(await app.dead_letter.list(until=NOW - timedelta(days=1))) == old
    assert await ids_of(await app.dead_letter.list(limit=1, offset=1)) == mail
    assert await app.dead_letter.count() == 3
    assert await app.dead_letter.count(job_name="a.one", since=NOW - timedelta(days=1)) == 1


async def test_reason_wildcards_are_taken_literally(app: Soniq, database_url: str) -> None:
    percent = bury(database_url, reason="quota at 50% of limit")
    bury(database_url, reason="quota at 500 of limit")
    under = bury(database_url, reason="bad a_b value")
    bury(database_url, reason="bad axb value")
    slash = bury(database_url, reason=r"path C:\tmp missing")
    assert await ids_of(await app.dead_letter.list(reason="50%")) == percent
    assert await ids_of(await app.dead_letter.list(reason="a_b")) == under
    assert await ids_of(await app.dead_letter.list(reason="c:\\tmp")) == slash
    assert await app.dead_letter.count(reason="%") == 1


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"since": datetime(2024, 1, 1)}, NAIVE_DATETIME),
        ({"until": datetime(2024, 1, 1)}, NAIVE_DATETIME),
        ({"since": "2024-01-01"}, INVALID_ARGUMENT),
        ({"since": NOW, "until": NOW - timedelta(days=1)}, INVALID_ARGUMENT),
        ({"job_name": ""}, INVALID_ARGUMENT),
        ({"queue": 7}, INVALID_ARGUMENT),
        ({"reason": ["x"]}, INVALID_ARGUMENT),
    ],
)
async def test_bad_filters_are_refused_by_every_method(
    app: Soniq, database_url: str, kwargs: dict[str, Any], code: str
) -> None:
    bury(database_url)
    calls = [
        lambda: app.dead_letter.list(**kwargs),
        lambda: app.dead_letter.count(**kwargs),
        lambda: app.dead_letter.replay_many(**kwargs),
        lambda: app.dead_letter.purge(**kwargs),
        lambda: app.dead_letter.export(io.StringIO(), **kwargs),
    ]
    for call in calls:
        with pytest.raises(SoniqError) as info:
            await call()
        assert info.value.code == code
    assert await app.dead_letter.count() == 1
    assert one(database_url, "SELECT count(*) FROM soniq_jobs") == 0


async def test_get_and_replay_one(app: Soniq, database_url: str) -> None:
    [dead] = bury(database_url)
    record = await app.dead_letter.get(dead)
    assert record is not None and set(record) == set(COLUMNS)
    new_id = await app.dead_letter.replay(dead)
    job = await app.get_job(new_id)
    assert job is not None and (job["status"], job["args"]) == ("queued", {"n": 1})
    record = await app.dead_letter.get(dead)
    assert record is not None and record["resurrection_count"] == 1
    with pytest.raises(SoniqError) as info:
        await app.dead_letter.replay(str(uuid.uuid4()))
    assert info.value.code == JOB_NOT_FOUND
    with pytest.raises(SoniqError) as info:
        await app.dead_letter.get("nope")
    assert info.value.code == INVALID_JOB_ID


# --------------------------------------------------------------------------- replay_many


async def test_replay_many_replays_every_match_in_batches(app: Soniq, database_url: str) -> None:
    wanted = bury(database_url, 1201, job_name="bulk.job", queue="bulk")
    other = bury(database_url, 3, job_name="other.job")
    batches: list[int] = []

    new_ids = await app.dead_letter.replay_many(job_name="bulk.job", progress=batches.append)

    assert batches == [500, 500, 201]
    assert len(new_ids) == len(set(new_ids)) == 1201
    assert one(database_url, "SELECT count(*) FROM soniq_jobs") == 1201
    # newest first: the first new job copies the newest dead letter
    first = await app.get_job(new_ids[0])
    assert first is not None and first["args"] == {"n": 1201}
    assert one(
        database_url,
        "SELECT array_agg(DISTINCT resurrection_count) FROM soniq_dead_letter_jobs "
        "WHERE id = ANY(%s::uuid[])",
        wanted,
    ) == [1]
    assert (
        one(
            database_url,
            "SELECT sum(resurrection_count) FROM soniq_dead_letter_jobs WHERE id = ANY(%s::uuid[])",
            other,
        )
        == 0
    )
    assert {j["queue"] for j in await app.list_jobs(limit=2000)} == {"bulk"}


async def test_replay_many_limit_takes_the_newest(app: Soniq, database_url: str) -> None:
    ids = bury(database_url, 5)
    new_ids = await app.dead_letter.replay_many(limit=2)
    assert len(new_ids) == 2
    replayed = [r["id"] for r in await app.dead_letter.list() if r["resurrection_count"]]
    assert replayed == ids[:-3:-1]
    assert await app.dead_letter.replay_many(limit=0) == []
    with pytest.raises(SoniqError) as info:
        await app.dead_letter.replay_many(limit=-1)
    assert info.value.code == INVALID_ARGUMENT


async def test_replay_many_never_replays_a_dead_letter_twice(
    app: Soniq, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dead letters that appear during the call (a replayed job failing again) are
    newer than every row it pages through, so it never reaches them."""
    from soniq.ops import dead_letter

    monkeypatch.setattr(dead_letter, "BATCH", 2)
    bury(database_url, 5, job_name="loop.job")
    appeared: list[str] = []

    def between_batches(done: int) -> None:
        # A replayed job fails again at once: its new id is dead-lettered now.
        with psycopg.connect(database_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT id::text FROM soniq_jobs ORDER BY created_at DESC LIMIT 1"
            ).fetchone()
            assert row is not None
            conn.execute(
                "WITH moved AS (DELETE FROM soniq_jobs WHERE id = %s::uuid RETURNING *) "
                "INSERT INTO soniq_dead_letter_jobs (id, job_name, args, queue, priority, "
                "attempts, max_attempts, reason, original_created_at) "
                "SELECT id, job_name, args, queue, priority, 4, 4, 'again', created_at FROM moved",
                (row[0],),
            )
            appeared.append(row[0])

    new_ids = await app.dead_letter.replay_many(job_name="loop.job", progress=between_batches)
    assert len(new_ids) == len(set(new_ids)) == 5
    assert len(appeared) == 3  # after each of the three batches
    counts = {r["id"]: r["resurrection_count"] for r in await app.dead_letter.list()}
    assert len(counts) == 5 + len(appeared)
    assert {counts[i] for i in appeared} == {0}
    assert sorted(c for i, c in counts.items() if i not in appeared) == [1] * 5


async def test_a_failing_batch_leaves_nothing_half_done(app: Soniq, database_url: str) -> None:
    bury(database_url, 3)
    with psycopg.connect(database_url, autocommit=True) as conn:
        # A row soniq_jobs refuses (priority out of range) sinks its whole batch.
        conn.execute(
            "UPDATE soniq_dead_letter_jobs SET priority = 0 WHERE id = "
            "(SELECT id FROM soniq_dead_letter_jobs ORDER BY dead_lettered_at LIMIT 1)"
        )
    with pytest.raises(psycopg.errors.CheckViolation):
        await app.dead_letter.replay_many()
    assert one(database_url, "SELECT count(*) FROM soniq_jobs") == 0
    assert one(database_url, "SELECT sum(resurrection_count) FROM soniq_dead_letter_jobs") == 0


async def test_replay_many_wakes_a_listening_worker_once_per_batch(
    app: Soniq, database_url: str
) -> None:
    bury(database_url, 3, queue="q1")
    bury(database_url, 2, queue="q2")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as listener:
        await listener.execute("LISTEN soniq_new_job")
        await app.dead_letter.replay_many()
        payloads = [note.payload async for note in listener.notifies(timeout=10, stop_after=2)]
    assert sorted(payloads) == ["q1", "q2"]


# --------------------------------------------------------------------------- purge


async def test_purge_needs_a_filter_or_all(app: Soniq, database_url: str) -> None:
    bury(database_url, 3)
    with pytest.raises(SoniqError) as info:
        await app.dead_letter.purge()
    assert info.value.code == FILTER_REQUIRED
    with pytest.raises(SoniqError) as info:
        await app.dead_letter.purge(all=True, queue="default")
    assert info.value.code == INVALID_ARGUMENT
    with pytest.raises(SoniqError) as info:
        await app.dead_letter.purge(all="yes")  # type: ignore[arg-type]
    assert info.value.code == INVALID_ARGUMENT
    assert await app.dead_letter.count() == 3
    assert await app.dead_letter.purge(all=True) == 3
    assert await app.dead_letter.count() == 0


async def test_purge_deletes_only_what_matches(app: Soniq, database_url: str) -> None:
    old = bury(database_url, 2, job_name="x.job", at=NOW - timedelta(days=40))
    recent = bury(database_url, 2, job_name="x.job")
    mail = bury(database_url, 1, queue="mail", reason="boom")
    assert await app.dead_letter.purge(until=NOW - timedelta(days=30)) == 2
    assert await app.dead_letter.purge(queue="nothing-here") == 0
    assert await app.dead_letter.purge(reason="BOOM") == 1
    remaining = await ids_of(await app.dead_letter.list())
    assert sorted(remaining) == sorted(recent)
    assert not set(remaining) & set(old + mail)


# --------------------------------------------------------------------------- export/import


async def test_export_purge_import_round_trip_preserves_every_row(
    app: Soniq, database_url: str
) -> None:
    bury(database_url, 3, traceback='Traceback:\n  ünïcode ✓ "quoted"\n', last_error=None)
    bury(database_url, 2, queue="mail", at=NOW - timedelta(days=2))
    await app.dead_letter.replay_many(queue="mail")  # resurrection fields set on two rows
    before = await app.dead_letter.list()
    assert len(before) == 5

    out = io.StringIO()
    assert await app.dead_letter.export(out) == 5
    lines = out.getvalue().splitlines()
    assert len(lines) == 5
    assert list(json.loads(lines[0])) == list(COLUMNS)
    assert await app.dead_letter.purge(all=True) == 5

    result = await app.dead_letter.import_(io.StringIO(out.getvalue()))
    assert result == ImportResult(imported=5, skipped=0)
    assert await app.dead_letter.list() == before


async def test_export_filters_and_reports_progress(app: Soniq, database_url: str) -> None:
    from soniq.ops import dead_letter

    bury(database_url, 7, job_name="keep.me")
    bury(database_url, 2, job_name="not.me")
    out = io.StringIO()
    seen: list[int] = []
    old_batch = dead_letter.BATCH
    dead_letter.BATCH = 3
    try:
        assert await app.dead_letter.export(out, job_name="keep.me", progress=seen.append) == 7
    finally:
        dead_letter.BATCH = old_batch
    assert seen == [3, 3, 1]
    names = {json.loads(line)["job_name"] for line in out.getvalue().splitlines()}
    assert names == {"keep.me"}
    assert len(out.getvalue().splitlines()) == 7


async def test_import_skips_ids_already_present(app: Soniq, database_url: str) -> None:
    bury(database_url, 3)
    out = io.StringIO()
    await app.dead_letter.export(out)
    newest = (await app.dead_letter.list(limit=1))[0]["id"]
    assert await app.dead_letter.purge(since=NOW - timedelta(minutes=59, seconds=58)) == 1
    result = await app.dead_letter.import_(io.StringIO(out.getvalue()))
    assert (result.imported, result.skipped) == (1, 2)
    assert (await app.dead_letter.list(limit=1))[0]["id"] == newest
    # the same file twice in one go: repeats are skipped too
    twice = io.StringIO(out.getvalue() * 2)
    assert await app.dead_letter.import_(twice) == ImportResult(imported=0, skipped=6)


def _line(**overrides: Any) -> str:
    obj: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "job_name": "x.job",
        "args": {"a": 1},
        "queue": "default",
        "priority": 100,
        "attempts": 4,
        "max_attempts": 4,
        "reason": "Failed all 4 attempts.",
        "last_error": "E: x",
        "traceback": None,
        "original_created_at": "2024-05-01T10:00:00+00:00",
        "dead_lettered_at": "2024-05-01T11:00:00Z",
        "resurrection_count": 0,
        "last_resurrected_at": None,
    }
    obj.update(overrides)
    return json.dumps({k: v for k, v in obj.items() if v is not ...}) + "\n"


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ("{not json\n", "not valid JSON"),
        ("[1, 2]\n", "expected a JSON object"),
        (_line(job_name=...), "missing field 'job_name'"),
        (_line(priority="high"), "field 'priority' must be an integer"),
        (_line(priority=0), "field 'priority' must be from 1 to 1000"),
        (_line(attempts=True), "field 'attempts' must be an integer"),
        (_line(args=[1]), "field 'args' must be a JSON object"),
        (_line(id="42"), "field 'id' must be a UUID"),
        (_line(dead_lettered_at="2024-05-01T11:00:00"), "has no UTC offset"),
        (_line(original_created_at="yesterday"), "is not an ISO 8601 time"),
        (_line(started_at="2024-05-01 10:30"), "has no UTC offset"),
        (_line(started_at=1714559400), "field 'started_at' must be an ISO 8601 string"),
        (_line(reason=None), "field 'reason' must not be null"),
        (_line(queue=""), "field 'queue' must not be empty"),
        (_line(last_error="nul \x00 here"), "NUL character"),
        (_line(colour="red"), "unknown field 'colour'"),
        (_line().replace('"a": 1', '"a": NaN'), "NaN is not a JSON number"),
        (_line().replace('"a": 1', '"a": "\\ud800"'), "not valid Unicode"),
    ],
)
async def test_a_bad_line_is_named_and_nothing_is_written(
    app: Soniq, database_url: str, bad: str, problem: str
) -> None:
    text = _line() + "\n" + _line() + bad + _line()
    with pytest.raises(SoniqError) as info:
        await app.dead_letter.import_(io.StringIO(text))
    assert info.value.code == INVALID_EXPORT
    assert info.value.details["line"] == 4
    assert "Line 4" in info.value.message and problem in info.value.message
    assert await app.dead_letter.count() == 0


async def test_a_file_that_is_not_utf8_is_named_by_line(app: Soniq, tmp_path: Any) -> None:
    path = tmp_path / "dead.jsonl"
    path.write_bytes(_line().encode() + b'{"id": "\xff"}\n')
    with path.open(encoding="utf-8") as f, pytest.raises(SoniqError) as info:
        await app.dead_letter.import_(f)
    assert info.value.code == INVALID_EXPORT
    assert "not UTF-8 text" in info.value.message
    assert await app.dead_letter.count() == 0


async def test_import_fills_in_left_out_nullable_fields(app: Soniq) -> None:
    # _line() has no started_at, like every export written before that column existed.
    line = _line(last_error=..., traceback=..., last_resurrected_at=...)
    assert await app.dead_letter.import_([line, "\n", "   \n"]) == ImportResult(1, 0)
    [record] = await app.dead_letter.list()
    assert (
        record["last_error"],
        record["traceback"],
        record["started_at"],
        record["last_resurrected_at"],
    ) == (None, None, None, None)
    assert record["dead_lettered_at"] == datetime(2024, 5, 1, 11, tzinfo=timezone.utc)


async def test_import_of_an_empty_file_writes_nothing(app: Soniq) -> None:
    assert await app.dead_letter.import_(io.StringIO("")) == ImportResult(0, 0)


# --------------------------------------------------------------------------- soniq_sync


def test_the_blocking_app_has_the_same_dead_letter_tools(
    sync_app: soniq_sync.Soniq, database_url: str
) -> None:
    bury(database_url, 4, job_name="s.one", at=NOW - timedelta(days=2))
    bury(database_url, 2, job_name="s.two", reason="Job s.two not registered.")
    dl = sync_app.dead_letter

    assert dl.count() == 6
    assert [r["job_name"] for r in dl.list(limit=2)] == ["s.two", "s.two"]
    assert len(dl.list(reason="not REGISTERED")) == 2
    with pytest.raises(SoniqError) as info:
        dl.list(since=datetime(2024, 1, 1))
    assert info.value.code == NAIVE_DATETIME

    seen: list[int] = []
    new_ids = dl.replay_many(job_name="s.one", limit=3, progress=seen.append)
    assert len(new_ids) == 3 and seen == [3]
    assert {sync_app.get_job(i)["status"] for i in new_ids} == {"queued"}  # type: ignore[index]

    out = io.StringIO()
    assert dl.export(out, since=NOW - timedelta(days=1)) == 2
    with pytest.raises(SoniqError) as info:
        dl.purge()
    assert info.value.code == FILTER_REQUIRED
    assert dl.purge(job_name="s.two") == 2
    assert dl.import_(io.StringIO(out.getvalue())) == ImportResult(imported=2, skipped=0)
    with pytest.raises(SoniqError) as info:
        dl.import_(io.StringIO(out.getvalue() + "oops\n"))
    assert info.value.code == INVALID_EXPORT and info.value.details["line"] == 3
    assert dl.purge(all=True) == 6
