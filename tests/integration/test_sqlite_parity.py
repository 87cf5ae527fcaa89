"""The SQLite store's queries give what the PostgreSQL queries give, for the same calls.

Each test runs one sequence of named queries on a fresh PostgreSQL database and on an
in-memory SQLite store, with the same parameters, and compares every result: column
names and order, row count, and every value, except that times and floats (which
depend on each clock) are compared by type only.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from soniq.enqueue.ids import new_job_id, new_job_ids
from soniq.storage.dialect import POSTGRES, SQLITE
from soniq.storage.queries import QUERIES as PG_QUERIES
from soniq.storage.queries import SQLITE_QUERIES
from soniq.storage.sqlite_engine import SqliteStore

WORKER = "00000000-0000-4000-8000-0000000000aa"
T0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)


def _norm(value: Any) -> Any:
    if isinstance(value, datetime):
        assert value.tzinfo is not None
        return "<datetime>"
    if isinstance(value, float):
        return "<float>"
    return value


class Pair:
    """One PostgreSQL connection and one SQLite store, run side by side."""

    def __init__(self, conn: psycopg.Connection[dict[str, Any]], store: SqliteStore) -> None:
        self.conn = conn
        self.store = store

    def pg(self, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        cur = self.conn.execute(PG_QUERIES[name].psycopg, params)
        return cur.fetchall() if cur.description else []

    def run(
        self,
        name: str,
        params: dict[str, Any],
        *,
        ordered: bool = True,
        sqlite_params: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Run ``name`` on both; assert the results match; return PostgreSQL's.

        ``sqlite_params``: what SQLite takes instead, where the dialects encode apart.
        """
        full = {p: None for p in PG_QUERIES[name].param_names} | params
        theirs = self.pg(name, full)
        ours = self.store.fetch(
            SQLITE_QUERIES[name], full if sqlite_params is None else sqlite_params
        )
        a = [
            [(k, type(v) if v is not None else None, _norm(v)) for k, v in r.items()]
            for r in theirs
        ]
        b = [
            [(k, type(v) if v is not None else None, _norm(v)) for k, v in r.items()] for r in ours
        ]
        if not ordered:
            a, b = sorted(a, key=repr), sorted(b, key=repr)
        assert b == a, name
        return theirs


@pytest.fixture
def pair(database_url: str) -> Iterator[Pair]:
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        store = SqliteStore(":memory:")
        store.setup()
        yield Pair(conn, store)
        store.close()


def job(n: int, **overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "id": new_job_id(),
        "job_name": "app.task",
        "args": f'{{"n": {n}, "nested": {{"k": [1, "two", null, true]}}}}',
        "queue": "default",
        "priority": 100,
        "max_attempts": 2,
        "dedup_key": None,
        "scheduled_at": T0 + timedelta(seconds=n),
        "headers": None,
    }
    params.update(overrides)
    return params


NO_FILTER = {"job_name": None, "queue": None, "reason": None, "since": None, "until": None}


def test_enqueue_claim_and_outcomes_match(pair: Pair) -> None:
    pair.run(
        "register_worker",
        {"id": WORKER, "hostname": "h", "pid": 1, "queues": ["default", "q"], "concurrency": 2},
    )
    jobs = [job(n) for n in range(5)]
    for j in jobs[:3]:
        pair.run("insert_job_plain", j)
    pair.run("insert_job", jobs[3] | {"dedup_key": "k", "headers": '{"traceparent": "t"}'})
    pair.run("insert_job", jobs[4] | {"dedup_key": "k"})  # skipped
    ids = new_job_ids(3)
    bulk = {
        "ids": ids,
        "args": ['{"b": 0}', '{"b": 1}', '{"b": 2}'],
        "dedup_keys": ["k", "m", None],
        "job_name": "app.task",
        "queue": "q",
        "priority": 50,
        "max_attempts": 1,
        "scheduled_at": T0,
        "headers": None,
    }
    pair.run("insert_jobs", bulk, ordered=False)
    pair.run(
        "find_queued_duplicates", {"job_name": "app.task", "dedup_keys": ["k", "m"]}, ordered=False
    )
    pair.run("find_queued_duplicate", {"job_name": "app.task", "dedup_key": "k"})
    pair.run("notify_queues", {"queues": ["q"]})
    pair.run("testing_runnable", {"queues": None})
    pair.run("testing_enqueued_jobs", {"queue": "q"})
    claimed = pair.run(
        "claim_jobs", {"worker_id": WORKER, "queues": ["q", "default"], "limit": 4}, ordered=False
    )
    assert len(claimed) == 4
    a, b, c, d = (row["id"] for row in sorted(claimed, key=lambda r: r["id"]))
    batch = [(a, 1, '{"ok": [1, 2]}'), (b, 7, None)]
    pair.run(
        "complete_jobs",
        POSTGRES.completions(batch),
        ordered=False,
        sqlite_params=SQLITE.completions(batch),
    )
    # Progress: d's attempt 1 is written (and goes with it to the dead-letter queue);
    # attempt 7 of c is a zombie's, fenced out.
    progress = [(d, 1, '{"current": 1, "data": {"k": [1, "x"]}}'), (c, 7, '{"current": 2}')]
    pg_progress, lite_progress = POSTGRES.completions(progress), SQLITE.completions(progress)
    pg_progress["values"] = pg_progress.pop("results")
    lite_progress["values"] = lite_progress.pop("results")
    written = pair.run("write_progress", pg_progress, sqlite_params=lite_progress)
    assert written == [{"id": d, "watched": False}]
    pair.run("retry_job", {"id": b, "attempt": 1, "delay": 30.0, "error": "boom"})
    pair.run("cancel_job", {"id": c})
    pair.run("cancel_requests", {"worker_id": WORKER})
    pair.run("snooze_job", {"id": c, "attempt": 1, "delay": 0.0})
    pair.run(
        "dead_letter_job", {"id": d, "attempt": 1, "reason": "r", "error": "e", "traceback": "tb"}
    )
    pair.run("cancel_job", {"id": jobs[0]["id"]})
    for j in [*jobs, *({"id": i} for i in ids), {"id": a}]:
        pair.run("get_job", {"id": j["id"]})
        pair.run("job_created_at", {"id": j["id"]})
        pair.run("get_dead_letter_job", {"id": j["id"]})
    pair.run("get_result", {"id": a, "ttl": 3600.0})
    pair.run("get_result", {"id": a, "ttl": -10.0})
    pair.run("list_jobs", {"limit": 100, "offset": 0})
    pair.run("list_jobs", {"status": "queued", "queue": "default", "limit": 2, "offset": 1})
    pair.run("queue_stats", {})
    pair.run("queue_status", {})
    pair.run("task_names_in_use", {})
    pair.run("queue_gauges", {"queues": None}, ordered=False)
    pair.run("list_workers", {"timeout": 30.0})
    pair.run("retry_job_now", {"id": b})
    pair.run("retry_job_now", {"id": c})
    pair.run("retry_job_now", {"id": a})
    pair.run("retry_job_now", {"id": new_job_id()})
    pair.run("heartbeat", {"id": WORKER})
    pair.run("claim_jobs", {"worker_id": WORKER, "queues": None, "limit": 10}, ordered=False)
    pair.run("recover_stale_workers", {"timeout": 3600.0})
    pair.run("recover_stale_workers", {"timeout": -1.0})
    pair.run("list_jobs", {"limit": 100, "offset": 0})
    pair.run("dead_letter_list", {**NO_FILTER, "limit": 100, "offset": 0})
    pair.run("deregister_worker", {"id": WORKER})
    pair.run("heartbeat", {"id": WORKER})
    pair.run("testing_make_due", {"queues": ["default"]})
    pair.run(
        "prune_finished_jobs",
        {"cutoff": datetime.now(timezone.utc) + timedelta(days=1), "limit": 1},
    )
    pair.run("prune_cutoff", {"older_than": 60.0})
    pair.run("delete_job", {"id": a})
    pair.run("delete_job", {"id": ids[2]})


def test_dead_letters_match(pair: Pair) -> None:
    pair.run("register_worker", {"id": WORKER, "hostname": "h", "pid": 1, "concurrency": 9})
    reasons = ["Exhausted", "Exhausted", "Timeout", "Ünicode ERROR", "50% done_x"]
    jobs = [job(n, queue="q" if n % 2 else "default", max_attempts=1) for n in range(5)]
    for j in jobs:
        pair.run("insert_job_plain", j)
    pair.run("claim_jobs", {"worker_id": WORKER, "queues": None, "limit": 10}, ordered=False)
    for j, reason in zip(jobs, reasons, strict=True):
        pair.run(
            "dead_letter_job",
            {"id": j["id"], "attempt": 1, "reason": reason, "error": f"E {reason.lower()}"},
        )
    for pattern in (None, "%exhausted%", "%ünicode%", "%50\\%%", "%50\\_%", "%e\\_x%"):
        pair.run("dead_letter_count", {**NO_FILTER, "reason": pattern})
        pair.run("dead_letter_list", {**NO_FILTER, "reason": pattern, "limit": 10, "offset": 0})
    pair.run("dead_letter_list", {**NO_FILTER, "queue": "q", "limit": 1, "offset": 1})
    # Keyset pages, walked on each side from its own last row.
    for side in ("pg", "sqlite"):
        seen: list[str] = []
        last: dict[str, Any] | None = None
        while True:
            params = {**NO_FILTER, "limit": 2, "before_at": None, "before_id": None}
            if last:
                params |= {"before_at": last["dead_lettered_at"], "before_id": last["id"]}
            page = (
                pair.pg("dead_letter_page", params)
                if side == "pg"
                else pair.store.fetch(SQLITE_QUERIES["dead_letter_page"], params)
            )
            if not page:
                break
            seen += [r["id"] for r in page]
            last = page[-1]
        expected = [
            r["id"] for r in pair.pg("dead_letter_list", {**NO_FILTER, "limit": 10, "offset": 0})
        ]
        assert seen == expected, side
    pair.run("dead_letter_get", {"id": jobs[0]["id"]})
    pair.run("dead_letter_replay", {"id": jobs[0]["id"], "new_id": new_job_id()})
    pair.run("dead_letter_replay", {"id": new_job_id(), "new_id": new_job_id()})
    pair.run(
        "dead_letter_replay_batch",
        {
            **NO_FILTER,
            "reason": "%e%",
            "limit": 3,
            "new_ids": new_job_ids(3),
            "before_at": None,
            "before_id": None,
        },
    )
    pair.run("dead_letter_list", {**NO_FILTER, "limit": 10, "offset": 0})
    exported = pair.pg("dead_letter_get", {"id": jobs[1]["id"]})[0]
    pair.run("dead_letter_purge", {**NO_FILTER, "queue": "q"})
    line = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in exported.items()}
    rows = json.dumps([line, line, {**line, "id": jobs[0]["id"]}])
    pair.run("dead_letter_import", {"rows": rows})
    pair.run("dead_letter_import", {"rows": rows})
    pair.run("dead_letter_get", {"id": jobs[1]["id"]})
    ours = pair.store.fetch(SQLITE_QUERIES["dead_letter_get"], {"id": jobs[1]["id"]})[0]
    assert ours["dead_lettered_at"] == exported["dead_lettered_at"]
    pair.run("queue_stats", {})
    pair.run("task_names_in_use", {})


def test_scheduler_matches(pair: Pair) -> None:
    first = T0 + timedelta(minutes=5)
    upsert = {
        "name": "nightly",
        "cron": "0 3 * * *",
        "interval_seconds": None,
        "timezone": "UTC",
        "args": '{"a": 1}',
        "queue": None,
        "priority": None,
        "catch_up": False,
        "next_run_at": first,
    }
    pair.run("scheduler_seconds_to_next", {})
    pair.run("schedule_upsert", upsert)
    pair.run(
        "schedule_upsert",
        upsert | {"name": "every", "cron": None, "interval_seconds": 90.0, "catch_up": True},
    )
    pair.run("schedule_pause", {"name": "nightly"})
    pair.run("schedule_upsert", upsert | {"args": '{"a": 2}', "next_run_at": T0})
    pair.run("schedule_upsert", upsert | {"cron": "0 4 * * *", "next_run_at": T0})
    pair.run("schedule_list", {"status": None})
    pair.run("schedule_list", {"status": "paused"})
    pair.run("schedule_resume", {"name": "every", "next_run_at": T0})
    pair.run("schedule_resume", {"name": "nightly", "next_run_at": first})
    pair.run("schedule_resume", {"name": "missing", "next_run_at": first})
    pair.run("scheduler_now", {})
    pair.run("scheduler_seconds_to_next", {})
    due = pair.run("scheduler_due", {"limit": 10})
    assert [r["name"] for r in due] == ["every", "nightly"]
    for row in due:
        advance = {
            "name": row["name"],
            "due": row["next_run_at"],
            "next_run_at": row["next_run_at"] + timedelta(days=1),
            "fired_at": None,
        }
        pair.run("scheduler_advance", advance)
        pair.run("scheduler_advance", advance)
    pair.run("schedule_get", {"name": "nightly"})
    pair.run("schedule_remove", {"name": "nightly"})
    pair.run("schedule_remove", {"name": "nightly"})
    pair.run("schedule_get", {"name": "nightly"})


def test_uuid_outputs_match(pair: Pair) -> None:
    j = job(0)
    pair.run("insert_job_plain", j)
    pair.run("claim_jobs", {"worker_id": WORKER, "queues": None, "limit": 1})
    theirs = pair.run("snooze_job", {"id": j["id"], "attempt": 1, "delay": 0.0})
    assert theirs == [{"id": uuid.UUID(j["id"]), "watched": False, "status": "queued"}]
