"""The SQLite store: its schema, its named queries and their semantics, no PostgreSQL.

Each test runs on an in-memory store and on a file store (``store`` fixture). The
queries are checked against the PostgreSQL ones in tests/integration/test_sqlite_parity.py.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from soniq.enqueue.ids import new_job_id, new_job_ids
from soniq.errors import DATABASE_UNREACHABLE, SoniqError
from soniq.storage.queries import QUERIES as PG_QUERIES
from soniq.storage.queries import SQLITE_QUERIES as QUERIES
from soniq.storage.sqlite_engine import SqliteStore, compiled, sqlite_migration_files

#: Every SQLite migration this Soniq ships, in order.
SHIPPED = [version for version, _ in sqlite_migration_files()]

#: PostgreSQL queries the SQLite store has no twin of (COPY, server admin, locks).
POSTGRES_ONLY = {
    "copy_jobs",
    "copy_jobs_scheduled",
    "create_database",
    "create_empty_database",
    "database_exists",
    "drop_database",
    "testing_close_template",
    "testing_end_sessions",
    "testing_ping",
    "prune_try_lock",
    "scheduler_try_lead",
    "scheduler_ping",
    # Pausing a queue is PostgreSQL only (app.queues refuses the local backends).
    "queue_pause",
    "queue_resume",
    "queue_list",
    "queue_paused",
    "queue_limited",
    "queue_control",
    "queue_set_limits",
    "queue_clear_limits",
    # The index by queue, and its claim, are PostgreSQL only too.
    "claim_jobs_by_queue",
    "queue_index_add",
    "queue_index_drop",
    "queue_index_state",
    "queue_index_announce",
    "queue_unconfirmed",
    "worker_control_seen",
    "schema_version",
    # Events of watched jobs go out on NOTIFY; SQLite waiters poll.
    "notify_job_events",
    # Completing a job in a caller's transaction needs PostgreSQL (ctx.complete).
    "complete_job_in_tx",
    "instance_matches",
    "instance_id",
    "current_transaction",
    "attempt_state",
    "set_lock_timeout",
    "migrations_applied",
    "listen",
    # Concurrency and rate limits are PostgreSQL only (local workers run limited jobs
    # as unlimited; app.limits refuses the local backends).
    "claim_limited",
    "claim_gated",
    "limited_waiting",
    *(name for name in PG_QUERIES if name.startswith("limit_")),
    # Webhooks are PostgreSQL-only (app.webhooks raises on SQLite and memory apps).
    *(name for name in PG_QUERIES if name.startswith("webhook_")),
}

WORKER = "00000000-0000-4000-8000-000000000001"


@pytest.fixture(params=["memory", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqliteStore]:
    path = ":memory:" if request.param == "memory" else str(tmp_path / "soniq.db")
    s = SqliteStore(path)
    s.setup()
    yield s
    s.close()


def job_params(**overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "id": new_job_id(),
        "job_name": "app.task",
        "args": '{"x": 1}',
        "queue": "default",
        "priority": 100,
        "max_attempts": 3,
        "dedup_key": None,
        "scheduled_at": None,
        "headers": None,
        "producer_id": "host:1",
        "limit_key": None,
    }
    params.update(overrides)
    return params


def enqueue(store: SqliteStore, **overrides: Any) -> str:
    params = job_params(**overrides)
    store.fetch(QUERIES["insert_job_plain"], params)
    return str(params["id"])


def claim(
    store: SqliteStore, limit: int = 10, queues: list[str] | None = None
) -> list[tuple[Any, ...]]:
    return store.rows(
        QUERIES["claim_jobs"], {"worker_id": WORKER, "queues": queues, "limit": limit}
    )


def get(store: SqliteStore, job_id: str) -> dict[str, Any]:
    (row,) = store.fetch(QUERIES["get_job"], {"id": job_id})
    return row


def register(store: SqliteStore, worker_id: str = WORKER) -> None:
    store.fetch(
        QUERIES["register_worker"],
        {"id": worker_id, "hostname": "h", "pid": 1, "queues": None, "concurrency": 4},
    )


# ----------------------------------------------------------------------- files and setup


def test_query_names_match_postgres() -> None:
    ours = {name for name in QUERIES if not name.startswith("store_")}
    assert ours == set(PG_QUERIES) - POSTGRES_ONLY


@pytest.mark.parametrize("name", sorted(n for n in QUERIES if not n.startswith("store_")))
def test_query_takes_the_postgres_parameters(name: str) -> None:
    assert set(compiled(QUERIES[name]).params) == set(PG_QUERIES[name].param_names)


def test_setup_is_idempotent(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    first = SqliteStore(path)
    assert SHIPPED[0] == "0001_initial" and "0003_due_and_stats" in SHIPPED
    assert first.pending_migrations() == SHIPPED
    assert first.migration_status()["applied"] == []
    assert first.setup() == SHIPPED
    assert first.setup() == []
    first.close()
    second = SqliteStore(path)
    assert second.setup() == []
    status = second.migration_status()
    assert [e["version"] for e in status["applied"]] == SHIPPED
    assert isinstance(status["applied"][0]["applied_at"], datetime)
    assert status["pending"] == [] and status["unknown"] == []
    assert second.pending_migrations() == []
    second.close()


def test_concurrent_setup_applies_once(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    stores = [SqliteStore(path) for _ in range(4)]
    results: list[list[str]] = []
    threads = [threading.Thread(target=lambda s=s: results.append(s.setup())) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results) == [[], [], [], SHIPPED]
    for s in stores:
        s.close()


def test_missing_directory_is_unreachable(tmp_path: Path) -> None:
    path = str(tmp_path / "nowhere" / "soniq.db")
    with pytest.raises(SoniqError) as info:
        SqliteStore(path)
    assert info.value.code == DATABASE_UNREACHABLE
    assert path in info.value.message


def test_not_a_database_is_unreachable(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are not the pages you are looking for\n" * 100)
    with pytest.raises(SoniqError) as info:
        SqliteStore(str(path))
    assert info.value.code == DATABASE_UNREACHABLE
    assert str(path) in info.value.message


# ----------------------------------------------------------------------- enqueue


def test_insert_and_get_decode_like_psycopg(store: SqliteStore) -> None:
    when = datetime(2030, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc)
    params = job_params(scheduled_at=when, headers='{"traceparent": "00-ab"}', dedup_key="k")
    (row,) = store.fetch(QUERIES["insert_job"], params)
    assert row == {"id": params["id"], "pg_notify": ""}
    job = get(store, params["id"])
    assert job["args"] == {"x": 1}
    assert job["scheduled_at"] == when
    assert job["created_at"].tzinfo is timezone.utc
    assert job["status"] == "queued" and job["attempts"] == 0 and job["worker_id"] is None
    assert job["result"] is None and job["cancel_requested_at"] is None
    assert list(job) == [
        "id", "job_name", "args", "queue", "priority", "status", "attempts", "max_attempts",
        "dedup_key", "scheduled_at", "created_at", "updated_at", "started_at", "finished_at",
        "worker_id", "result", "last_error", "cancel_requested_at", "producer_id", "progress",
    ]  # fmt: skip


def test_dedup_skips_a_queued_duplicate(store: SqliteStore) -> None:
    first = job_params(dedup_key="same")
    assert store.fetch(QUERIES["insert_job"], first)
    assert store.fetch(QUERIES["insert_job"], job_params(dedup_key="same")) == []
    assert store.fetch(QUERIES["insert_job"], job_params(dedup_key="same", job_name="other"))
    assert store.fetch(
        QUERIES["find_queued_duplicate"], {"job_name": "app.task", "dedup_key": "same"}
    ) == [{"id": first["id"]}]
    # Once the first is claimed, the key is free again.
    claim(store)
    assert store.fetch(QUERIES["insert_job"], job_params(dedup_key="same"))


def test_insert_jobs_skips_queued_and_repeated_keys(store: SqliteStore) -> None:
    held = job_params(dedup_key="a")
    store.fetch(QUERIES["insert_job"], held)
    ids = new_job_ids(4)
    rows = store.fetch(
        QUERIES["insert_jobs"],
        {
            "ids": ids,
            "args": ['{"n": 0}', '{"n": 1}', '{"n": 2}', '{"n": 3}'],
            "dedup_keys": ["a", "b", "b", None],
            "job_name": "app.task",
            "queue": "q",
            "priority": 5,
            "max_attempts": 2,
            "scheduled_at": None,
            "headers": '{"h": 1}',
        },
    )
    assert sorted(r["id"] for r in rows) == sorted([ids[1], ids[3]])
    assert get(store, ids[3])["args"] == {"n": 3}
    found = store.fetch(
        QUERIES["find_queued_duplicates"], {"job_name": "app.task", "dedup_keys": ["a", "b", "c"]}
    )
    assert sorted(found, key=lambda r: r["dedup_key"]) == [
        {"dedup_key": "a", "id": held["id"]},
        {"dedup_key": "b", "id": ids[1]},
    ]


def test_copy_jobs_in_a_transaction(store: SqliteStore) -> None:
    ids = new_job_ids(3)
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    with store.transaction() as session:
        session.copy_jobs(
            QUERIES["store_copy_job"],
            ids[:2],
            ['{"a": 1}', '{"a": 2}'],
            ("app.bulk", "bulk", 7, 2, "p:1"),
        )
        session.copy_jobs(
            QUERIES["store_copy_job"],
            ids[2:],
            ['{"a": 3}'],
            ("app.bulk", "bulk", 7, 2, "p:1", later),
        )
        assert len(session.fetch(QUERIES["testing_enqueued_jobs"], {"job_name": "app.bulk"})) == 3
    assert [r[0] for r in claim(store, queues=["bulk"])] == ids[:2]
    assert get(store, ids[2])["scheduled_at"] == later


def test_transaction_rolls_back_on_error(store: SqliteStore) -> None:
    job_id = new_job_id()
    with pytest.raises(sqlite3.IntegrityError), store.transaction() as session:
        session.fetch(QUERIES["insert_job_plain"], job_params(id=job_id))
        session.fetch(QUERIES["insert_job_plain"], job_params(id=job_id))
    assert store.fetch(QUERIES["get_job"], {"id": job_id}) == []


def test_notify_queues_does_nothing(store: SqliteStore) -> None:
    assert store.fetch(QUERIES["notify_queues"], {"queues": ["a", "b"]}) == [{"pg_notify": ""}] * 2
    assert store.fetch(QUERIES["queue_stats"], {}) == []


# ----------------------------------------------------------------------- claim and outcomes


def test_claim_order_queues_and_limit(store: SqliteStore) -> None:
    now = datetime.now(timezone.utc)
    low = enqueue(store, priority=200)
    high = enqueue(store, priority=1)
    enqueue(store, queue="other")
    enqueue(store, scheduled_at=now + timedelta(hours=1))
    rows = claim(store, limit=1, queues=["default"])
    assert [r[0] for r in rows] == [high]
    (row,) = rows
    assert row[1:7] == ("app.task", {"x": 1}, "default", 1, 1, 3)
    assert isinstance(row[7], datetime) and isinstance(row[8], datetime) and row[9] is None
    assert [r[0] for r in claim(store, queues=["default"])] == [low]
    assert [r[4] for r in claim(store)] == [100]  # the "other" queue; the future one waits
    assert claim(store) == []
    job = get(store, high)
    assert job["status"] == "processing" and job["worker_id"] == WORKER


def test_complete_jobs_is_fenced_by_attempt(store: SqliteStore) -> None:
    a, b, c = enqueue(store), enqueue(store), enqueue(store)
    claim(store)
    done = store.rows(
        QUERIES["complete_jobs"],
        {
            "ids": json.dumps([a, b, c]),
            "attempts": "[1,2,1]",
            "results": '[{"r": 1}, null, null]',
        },
    )
    assert sorted(r[0] for r in done) == sorted([uuid.UUID(a), uuid.UUID(c)])
    assert get(store, a)["result"] == {"r": 1} and get(store, a)["status"] == "done"
    assert get(store, c)["result"] is None and get(store, c)["finished_at"] is not None
    assert get(store, b)["status"] == "processing"
    # A finished job does not complete twice.
    done = store.rows(
        QUERIES["complete_jobs"], {"ids": [a, b], "attempts": [1, 1], "results": '["s", 2]'}
    )
    assert done == [(uuid.UUID(b), False)]  # and whether it is watched (no)
    assert get(store, b)["result"] == 2
    assert (
        store.rows(QUERIES["complete_jobs"], {"ids": "[]", "attempts": "[]", "results": "[]"}) == []
    )


def test_retry_snooze_and_cancel_running(store: SqliteStore) -> None:
    job = enqueue(store)
    claim(store)
    fence = {"id": job, "attempt": 1}
    assert store.rows(QUERIES["retry_job"], {**fence, "attempt": 2, "delay": 0, "error": "x"}) == []
    assert store.rows(QUERIES["retry_job"], {**fence, "delay": 60.0, "error": "boom"}) == [
        (uuid.UUID(job), False, "queued")
    ]
    row = get(store, job)
    assert row["status"] == "queued" and row["last_error"] == "boom"
    assert row["scheduled_at"] > datetime.now(timezone.utc) + timedelta(seconds=50)
    store.fetch(QUERIES["testing_make_due"], {"queues": None})
    claim(store)
    assert store.rows(QUERIES["snooze_job"], {"id": job, "attempt": 2, "delay": 0}) == [
        (uuid.UUID(job), False, "queued")
    ]
    assert get(store, job)["attempts"] == 1
    claim(store)
    assert store.rows(QUERIES["cancel_running_job"], {"id": job, "attempt": 1}) == []
    assert store.rows(QUERIES["cancel_running_job"], {"id": job, "attempt": 2}) == [
        (uuid.UUID(job), False)
    ]
    assert get(store, job)["status"] == "cancelled"


def test_cancel_request_reaches_the_worker_and_ends_the_retry(store: SqliteStore) -> None:
    job = enqueue(store)
    claim(store)
    (row,) = store.fetch(QUERIES["cancel_job"], {"id": job})
    assert row == {"id": job, "status": "processing", "woke": "", "watched": False}
    stamp = get(store, job)["cancel_requested_at"]
    store.fetch(QUERIES["cancel_job"], {"id": job})
    assert get(store, job)["cancel_requested_at"] == stamp  # the first request is kept
    assert store.fetch(QUERIES["cancel_requests"], {"worker_id": WORKER}) == [{"id": job}]
    store.rows(QUERIES["retry_job"], {"id": job, "attempt": 1, "delay": 0, "error": "e"})
    assert get(store, job)["status"] == "cancelled"
    queued = enqueue(store)
    assert store.fetch(QUERIES["cancel_job"], {"id": queued}) == [
        {"id": queued, "status": "cancelled", "woke": None, "watched": False}
    ]
    assert store.fetch(QUERIES["cancel_job"], {"id": queued}) == []


def test_dead_letter_job_moves_the_fenced_row(store: SqliteStore) -> None:
    job = enqueue(store)
    claim(store)
    bury = {"id": job, "reason": "Exhausted", "error": "E", "traceback": "tb"}
    assert store.rows(QUERIES["dead_letter_job"], {**bury, "attempt": 9}) == []
    assert get(store, job)["status"] == "processing"
    started_at = get(store, job)["started_at"]
    assert store.rows(QUERIES["dead_letter_job"], {**bury, "attempt": 1}) == [
        (uuid.UUID(job), False)
    ]
    assert store.fetch(QUERIES["get_job"], {"id": job}) == []
    (dead,) = store.fetch(QUERIES["get_dead_letter_job"], {"id": job})
    assert dead["status"] == "dead_letter" and dead["reason"] == "Exhausted"
    assert dead["args"] == {"x": 1} and dead["resurrection_count"] == 0
    assert dead["started_at"] == started_at is not None
    assert store.fetch(QUERIES["dead_letter_get"], {"id": job})[0]["started_at"] == started_at


def test_workers_heartbeat_and_stale_recovery(store: SqliteStore) -> None:
    register(store)
    assert store.rows(QUERIES["heartbeat"], {"id": WORKER}) == [(uuid.UUID(WORKER), 0)]
    register(store)  # re-registering only bumps the heartbeat
    retried = enqueue(store, max_attempts=3)
    last = enqueue(store, max_attempts=1)
    stopping = enqueue(store, max_attempts=1)
    claim(store)
    last_started_at = get(store, last)["started_at"]
    store.fetch(QUERIES["cancel_job"], {"id": stopping})
    assert store.fetch(QUERIES["recover_stale_workers"], {"timeout": 3600}) == [
        {"workers": 0, "requeued": 0, "dead_lettered": 0, "woke": None, "events": None}
    ]
    (found,) = store.fetch(QUERIES["recover_stale_workers"], {"timeout": -1})
    assert found == {
        "workers": 1,
        "requeued": 2,
        "dead_lettered": 1,
        "woke": "",
        "events": None,  # no NOTIFY on SQLite: waiters poll
    }
    assert get(store, retried)["status"] == "queued"
    assert get(store, retried)["last_error"] == "Worker stopped heartbeating during this attempt."
    assert get(store, stopping)["status"] == "cancelled"
    (dead,) = store.fetch(QUERIES["get_dead_letter_job"], {"id": last})
    assert dead["reason"] == "Worker died during the final attempt."
    assert dead["started_at"] == last_started_at is not None
    assert store.fetch(QUERIES["list_workers"], {"timeout": 30}) == []
    # Jobs whose worker row is already gone are recovered too.
    claim(store)
    assert store.fetch(QUERIES["recover_stale_workers"], {"timeout": 3600})[0]["requeued"] == 1
    register(store)
    store.fetch(QUERIES["deregister_worker"], {"id": WORKER})
    assert store.rows(QUERIES["heartbeat"], {"id": WORKER}) == []


def test_testing_helpers(store: SqliteStore) -> None:
    later = datetime.now(timezone.utc) + timedelta(days=1)
    enqueue(store, scheduled_at=later)
    enqueue(store, queue="q", job_name="b")
    assert store.fetch(QUERIES["testing_runnable"], {"queues": None}) == [
        {"job_name": "b", "jobs": 1}
    ]
    assert store.fetch(QUERIES["testing_make_due"], {"queues": ["q"]}) == [{"moved": 0}]
    assert store.fetch(QUERIES["testing_make_due"], {"queues": None}) == [{"moved": 1}]
    assert store.fetch(QUERIES["testing_runnable"], {"queues": ["default"]}) == [
        {"job_name": "app.task", "jobs": 1}
    ]
    assert [
        r["job_name"] for r in store.fetch(QUERIES["testing_enqueued_jobs"], {"queue": "q"})
    ] == ["b"]


# ----------------------------------------------------------------------- concurrency


def test_threads_inserting_concurrently_lose_nothing(store: SqliteStore) -> None:
    def insert(n: int) -> None:
        for _ in range(50):
            enqueue(store, queue=f"t{n}")

    threads = [threading.Thread(target=insert, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    stats = store.fetch(QUERIES["queue_stats"], {})
    assert [(s["queue"], s["queued"]) for s in stats] == [(f"t{n}", 50) for n in range(4)]


def test_two_stores_on_one_file_see_each_other(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    a, b = SqliteStore(path), SqliteStore(path)
    a.setup()
    job = enqueue(a)
    assert [r[0] for r in claim(b)] == [job]
    assert get(a, job)["status"] == "processing"
    a.close()
    b.close()


def test_a_held_write_lock_times_out_as_operational_error(tmp_path: Path) -> None:
    path = str(tmp_path / "locked.db")
    a, b = SqliteStore(path), SqliteStore(path)
    a.setup()
    b._conn.execute("PRAGMA busy_timeout = 50")
    with a.transaction() as session:
        session.fetch(QUERIES["insert_job_plain"], job_params())
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            enqueue(b)
        assert b.fetch(QUERIES["queue_stats"], {}) == []  # readers are not blocked (WAL)
    assert b.fetch(QUERIES["queue_stats"], {})[0]["queued"] == 1
    a.close()
    b.close()


def test_params_encode_types(store: SqliteStore) -> None:
    job = job_params(id=uuid.UUID(new_job_id()), headers={"k": [1, 2]})
    store.fetch(QUERIES["insert_job_plain"], job)
    row = get(store, str(job["id"]))
    assert row["id"] == str(job["id"])
    assert json.loads(json.dumps(row["args"])) == {"x": 1}


# ----------------------------------------------------------------------- every query runs

#: Representative parameters per query (the rest are NULL, as a missing key is).
NOW = datetime.now(timezone.utc)
SAMPLE_ID = "0190a0a0-0000-7000-8000-000000000000"
REPRESENTATIVE: dict[str, dict[str, Any]] = {
    "insert_job": job_params(id=SAMPLE_ID),
    "insert_job_plain": job_params(),
    "insert_jobs": {**job_params(), "ids": [new_job_id()], "args": ["{}"], "dedup_keys": [None]},
    "find_queued_duplicates": {"job_name": "app.task", "dedup_keys": ["k"]},
    "find_queued_duplicate": {"job_name": "app.task", "dedup_key": "k"},
    "notify_queues": {"queues": ["default"]},
    "list_jobs": {"limit": 10, "offset": 0, "since": NOW - timedelta(days=1), "until": NOW},
    "get_result": {"id": SAMPLE_ID, "ttl": 60.0},
    "claim_jobs": {"worker_id": WORKER, "queues": ["default"], "limit": 1},
    "complete_jobs": {"ids": f'["{SAMPLE_ID}"]', "attempts": "[1]", "results": "[null]"},
    "retry_job": {"id": SAMPLE_ID, "attempt": 1, "delay": 1.5, "error": "e"},
    "snooze_job": {"id": SAMPLE_ID, "attempt": 1, "delay": 1.5},
    "cancel_running_job": {"id": SAMPLE_ID, "attempt": 1},
    "cancel_requests": {"worker_id": WORKER},
    "dead_letter_job": {"id": SAMPLE_ID, "attempt": 1, "reason": "r", "error": None},
    "register_worker": {"id": WORKER, "hostname": "h", "pid": 1, "concurrency": 1},
    "heartbeat": {"id": WORKER},
    "deregister_worker": {"id": WORKER},
    "recover_stale_workers": {"timeout": 30.0},
    "queue_gauges": {"queues": ["default"]},
    "prune_cutoff": {"older_than": 3600.0},
    "prune_finished_jobs": {"cutoff": NOW, "limit": 100},
    "list_workers": {"timeout": 30.0},
    "testing_make_due": {"queues": ["default"]},
    "testing_runnable": {"queues": None},
    "dead_letter_list": {"reason": "%x%", "limit": 5, "offset": 0},
    "dead_letter_page": {"before_at": NOW, "before_id": SAMPLE_ID, "limit": 5},
    "dead_letter_replay": {"id": SAMPLE_ID, "new_id": new_job_id()},
    "dead_letter_replay_batch": {"limit": 5, "new_ids": new_job_ids(5)},
    "dead_letter_import": {"rows": "[]"},
    "schedule_upsert": {
        "name": "s",
        "cron": None,
        "interval_seconds": 60.0,
        "timezone": "UTC",
        "args": "{}",
        "catch_up": False,
        "next_run_at": NOW,
    },
    "schedule_resume": {"name": "s", "next_run_at": NOW},
    "scheduler_due": {"limit": 10},
    "scheduler_advance": {"name": "s", "due": NOW, "next_run_at": NOW, "fired_at": NOW},
}


@pytest.mark.parametrize("name", sorted(n for n in QUERIES if not n.startswith("store_")))
def test_every_query_runs(store: SqliteStore, name: str) -> None:
    enqueue(store)
    rows = store.fetch(QUERIES[name], REPRESENTATIVE.get(name, {"id": SAMPLE_ID, "name": "s"}))
    assert isinstance(rows, list)
    assert all(isinstance(row, dict) for row in rows)


# ----------------------------------------------------------------------- inspection


def test_list_jobs_filters_and_pages(store: SqliteStore) -> None:
    ids = [enqueue(store, queue="a" if n % 2 else "b") for n in range(5)]
    page = store.fetch(QUERIES["list_jobs"], {"queue": "a", "limit": 10, "offset": 0})
    assert {r["id"] for r in page} == {ids[1], ids[3]}
    everything = store.fetch(QUERIES["list_jobs"], {"limit": None, "offset": None})
    assert len(everything) == 5
    assert store.fetch(QUERIES["list_jobs"], {"limit": 2, "offset": 4}) == everything[4:]
    future = datetime.now(timezone.utc) + timedelta(days=1)
    assert store.fetch(QUERIES["list_jobs"], {"since": future, "limit": 10}) == []
    assert (
        len(store.fetch(QUERIES["list_jobs"], {"until": future, "limit": 10, "status": "queued"}))
        == 5
    )


def test_retry_job_now_rules(store: SqliteStore) -> None:
    fresh = enqueue(store)
    (row,) = store.fetch(QUERIES["retry_job_now"], {"id": fresh})
    assert row["status"] == "queued" and row["attempts"] == 0 and row["requeued"] == 0
    assert isinstance(row["scheduled_at"], datetime)
    assert store.fetch(QUERIES["retry_job_now"], {"id": new_job_id()}) == []
    # A failed job waiting out its delay becomes due now.
    claim(store)
    store.rows(QUERIES["retry_job"], {"id": fresh, "attempt": 1, "delay": 3600, "error": "e"})
    assert store.fetch(QUERIES["retry_job_now"], {"id": fresh})[0]["requeued"] == 1
    assert [r[0] for r in claim(store)] == [fresh]
    # A cancelled job on its last attempt gets one more, keeping its attempt count.
    store.fetch(QUERIES["cancel_job"], {"id": fresh})
    store.rows(QUERIES["cancel_running_job"], {"id": fresh, "attempt": 2})
    store.fetch(QUERIES["retry_job_now"], {"id": fresh})
    job = get(store, fresh)
    assert (job["status"], job["attempts"], job["max_attempts"]) == ("queued", 2, 3)
    assert job["finished_at"] is None and job["cancel_requested_at"] is None
    done = enqueue(store, max_attempts=1)
    claim(store)
    store.rows(
        QUERIES["complete_jobs"], {"ids": [fresh, done], "attempts": [3, 1], "results": "[1, 2]"}
    )
    assert store.fetch(QUERIES["retry_job_now"], {"id": done})[0]["requeued"] == 0


def test_results_expire_and_jobs_delete(store: SqliteStore) -> None:
    job = enqueue(store)
    assert store.fetch(QUERIES["get_result"], {"id": job, "ttl": 60}) == []
    claim(store)
    store.rows(
        QUERIES["complete_jobs"], {"ids": [job], "attempts": [1], "results": '[{"ok": true}]'}
    )
    assert store.fetch(QUERIES["get_result"], {"id": job, "ttl": 60}) == [{"result": {"ok": True}}]
    assert store.fetch(QUERIES["get_result"], {"id": job, "ttl": -1}) == []
    assert store.rows(QUERIES["delete_job"], {"id": job}) == [(uuid.UUID(job),)]
    assert store.rows(QUERIES["delete_job"], {"id": job}) == []


def test_status_gauges_and_task_names(store: SqliteStore) -> None:
    enqueue(store, queue="a")
    enqueue(store, queue="a", scheduled_at=datetime.now(timezone.utc) + timedelta(hours=1))
    running = enqueue(store, queue="b", job_name="other")
    claim(store, queues=["b"])
    store.rows(QUERIES["dead_letter_job"], {"id": running, "attempt": 1, "reason": "r"})
    register(store)
    (a, b) = store.fetch(QUERIES["queue_status"], {})
    assert (a["queue"], a["runnable"], a["scheduled"], a["dead_letter"]) == ("a", 1, 1, 0)
    assert a["oldest_runnable_age"] >= 0 and b["oldest_runnable_age"] is None
    assert (b["queue"], b["dead_letter"], b["done_last_minute"]) == ("b", 1, 0)
    assert [s["queue"] for s in store.fetch(QUERIES["queue_stats"], {})] == ["a", "b"]
    (gauge,) = store.fetch(QUERIES["queue_gauges"], {"queues": None})
    assert (gauge["queue"], gauge["depth"]) == ("a", 1) and gauge["oldest_age"] >= 0
    assert store.fetch(QUERIES["task_names_in_use"], {}) == [
        {"job_name": "app.task", "queued": 2, "processing": 0, "dead_letter": 0},
        {"job_name": "other", "queued": 0, "processing": 0, "dead_letter": 1},
    ]
    (worker,) = store.fetch(QUERIES["list_workers"], {"timeout": 30})
    assert worker["stale"] is False and worker["queues"] is None
    assert worker["jobs_in_flight"] == 0 and worker["seconds_since_heartbeat"] >= 0
    store.fetch(
        QUERIES["register_worker"],
        {"id": new_job_id(), "hostname": "h", "pid": 2, "queues": ["a", "b"], "concurrency": 1},
    )
    assert store.fetch(QUERIES["list_workers"], {"timeout": -1})[1]["queues"] == ["a", "b"]


def test_prune_oldest_first_in_batches(store: SqliteStore) -> None:
    ids = [enqueue(store) for _ in range(3)]
    claim(store)
    for job in ids:  # finished one after the other
        store.rows(QUERIES["complete_jobs"], {"ids": [job], "attempts": [1], "results": "[null]"})
    (cutoff,) = store.fetch(QUERIES["prune_cutoff"], {"older_than": -60})
    assert isinstance(cutoff["cutoff"], datetime)
    assert store.fetch(QUERIES["prune_finished_jobs"], {**cutoff, "limit": 2}) == [{"deleted": 2}]
    assert [r["id"] for r in store.fetch(QUERIES["list_jobs"], {"limit": 10})] == [ids[2]]
    (past,) = store.fetch(QUERIES["prune_cutoff"], {"older_than": 3600})
    assert store.fetch(QUERIES["prune_finished_jobs"], {**past, "limit": 10}) == [{"deleted": 0}]


# ----------------------------------------------------------------------- dead letters


def bury(store: SqliteStore, **overrides: Any) -> str:
    reason = overrides.pop("reason", "Exhausted")
    error = overrides.pop("error", None)
    job = enqueue(store, **overrides)
    store.rows(
        QUERIES["claim_jobs"],
        {"worker_id": WORKER, "queues": [overrides.get("queue", "default")], "limit": 100},
    )
    store.rows(
        QUERIES["dead_letter_job"], {"id": job, "attempt": 1, "reason": reason, "error": error}
    )
    return job


def test_dead_letter_filters_and_keyset_pages(store: SqliteStore) -> None:
    ids = [bury(store, reason="Exhausted", error=f"ÉRROR number {n}") for n in range(5)]
    other = bury(store, queue="q", reason="50% done_x", error=None)
    none = {"job_name": None, "queue": None, "reason": None, "since": None, "until": None}
    assert store.fetch(QUERIES["dead_letter_count"], none) == [{"count": 6}]
    # Case-insensitive beyond ASCII, on reason or last error; wildcards escaped.
    assert store.fetch(QUERIES["dead_letter_count"], {**none, "reason": "%érror%"}) == [
        {"count": 5}
    ]
    assert store.fetch(QUERIES["dead_letter_count"], {**none, "reason": "%50\\%%"}) == [
        {"count": 1}
    ]
    assert store.fetch(QUERIES["dead_letter_count"], {**none, "reason": "%e\\_x%"}) == [
        {"count": 1}
    ]
    assert store.fetch(QUERIES["dead_letter_count"], {**none, "reason": "%50\\_%"}) == [
        {"count": 0}
    ]
    listed = store.fetch(QUERIES["dead_letter_list"], {**none, "limit": 10, "offset": 0})
    expected = sorted([*ids, other], key=lambda i: (get_dl(store, i)["dead_lettered_at"], i))
    assert [r["id"] for r in listed] == expected[::-1]
    seen: list[str] = []
    page = store.fetch(QUERIES["dead_letter_page"], {**none, "limit": 4})
    while page:
        seen += [r["id"] for r in page]
        last = page[-1]
        page = store.fetch(
            QUERIES["dead_letter_page"],
            {**none, "limit": 4, "before_at": last["dead_lettered_at"], "before_id": last["id"]},
        )
    assert seen == expected[::-1]
    assert store.fetch(QUERIES["dead_letter_get"], {"id": other})[0]["queue"] == "q"


def get_dl(store: SqliteStore, job_id: str) -> dict[str, Any]:
    (row,) = store.fetch(QUERIES["dead_letter_get"], {"id": job_id})
    return row


def test_dead_letter_replay_and_batch(store: SqliteStore) -> None:
    first, second, third = (bury(store) for _ in range(3))
    new = new_job_id()
    assert store.fetch(QUERIES["dead_letter_replay"], {"id": first, "new_id": new}) == [
        {"id": new, "pg_notify": ""}
    ]
    assert get(store, new)["args"] == {"x": 1} and get(store, new)["status"] == "queued"
    row = get_dl(store, first)
    assert row["resurrection_count"] == 1 and isinstance(row["last_resurrected_at"], datetime)
    assert (
        store.fetch(QUERIES["dead_letter_replay"], {"id": new_job_id(), "new_id": new_job_id()})
        == []
    )
    new_ids = new_job_ids(2)
    none = {"job_name": None, "queue": None, "reason": None, "since": None, "until": None}
    replayed = store.fetch(
        QUERIES["dead_letter_replay_batch"], {**none, "limit": 2, "new_ids": new_ids}
    )
    newest = [r["id"] for r in store.fetch(QUERIES["dead_letter_list"], {**none, "limit": 2})]
    assert [(r["id"], r["dead_letter_id"], r["woke"]) for r in replayed] == [
        (new_ids[0], newest[0], 1),
        (new_ids[1], newest[1], 1),
    ]
    assert isinstance(replayed[0]["dead_lettered_at"], datetime)
    assert {get_dl(store, i)["resurrection_count"] for i in (second, third)} == {1}
    assert len(store.fetch(QUERIES["testing_enqueued_jobs"], {})) == 3


def test_dead_letter_purge_and_import(store: SqliteStore) -> None:
    keep = bury(store, queue="keep")
    gone = bury(store, queue="gone")
    exported = get_dl(store, gone)
    none = {"job_name": None, "queue": None, "reason": None, "since": None, "until": None}
    assert store.fetch(QUERIES["dead_letter_purge"], {**none, "queue": "gone"}) == [{"count": 1}]
    assert store.fetch(QUERIES["dead_letter_get"], {"id": gone}) == []
    line = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in exported.items()}
    rows = json.dumps([line, line, {**line, "id": keep}])
    assert store.fetch(QUERIES["dead_letter_import"], {"rows": rows}) == [{"count": 1}]
    assert get_dl(store, gone) == exported
    assert store.fetch(QUERIES["dead_letter_import"], {"rows": rows}) == [{"count": 0}]


# ----------------------------------------------------------------------- scheduler


def schedule(store: SqliteStore, **overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "name": "nightly", "cron": "0 3 * * *", "interval_seconds": None, "timezone": "UTC",
        "args": '{"a": 1}', "queue": None, "priority": None, "catch_up": False,
        "next_run_at": datetime(2030, 1, 1, 3, tzinfo=timezone.utc),
    }  # fmt: skip
    params.update(overrides)
    (row,) = store.fetch(QUERIES["schedule_upsert"], params)
    return row


def test_schedule_upsert_keeps_status_and_next_run(store: SqliteStore) -> None:
    row = schedule(store)
    assert row["status"] == "active" and row["catch_up"] is False and row["args"] == {"a": 1}
    assert row["next_run_at"] == datetime(2030, 1, 1, 3, tzinfo=timezone.utc)
    assert store.fetch(QUERIES["schedule_pause"], {"name": "nightly"}) == [{"name": "nightly"}]
    later = datetime(2031, 1, 1, tzinfo=timezone.utc)
    row = schedule(store, next_run_at=later, args='{"a": 2}', catch_up=True)
    assert row["status"] == "paused" and row["catch_up"] is True and row["args"] == {"a": 2}
    assert row["next_run_at"] == datetime(2030, 1, 1, 3, tzinfo=timezone.utc)
    row = schedule(store, cron=None, interval_seconds=60.0, next_run_at=later)
    assert row["next_run_at"] == later and row["interval_seconds"] == 60.0
    assert list(row) == list(store.fetch(QUERIES["schedule_get"], {"name": "nightly"})[0])
    with pytest.raises(sqlite3.IntegrityError):
        schedule(store, name="both", interval_seconds=5.0)
    assert [r["name"] for r in store.fetch(QUERIES["schedule_list"], {"status": "paused"})] == [
        "nightly"
    ]
    assert store.fetch(QUERIES["schedule_list"], {"status": "active"}) == []
    assert store.fetch(QUERIES["schedule_resume"], {"name": "nightly", "next_run_at": NOW})
    assert get_schedule(store)["next_run_at"] == NOW
    assert store.fetch(QUERIES["schedule_remove"], {"name": "nightly"}) == [{"name": "nightly"}]
    assert store.fetch(QUERIES["schedule_remove"], {"name": "nightly"}) == []


def get_schedule(store: SqliteStore) -> dict[str, Any]:
    (row,) = store.fetch(QUERIES["schedule_get"], {"name": "nightly"})
    return row


def test_scheduler_due_and_advance_once(store: SqliteStore) -> None:
    (now,) = store.fetch(QUERIES["scheduler_now"], {})
    assert store.fetch(QUERIES["scheduler_seconds_to_next"], {}) == [{"seconds": None}]
    schedule(store, next_run_at=now["now"] + timedelta(seconds=30))
    (seconds,) = store.fetch(QUERIES["scheduler_seconds_to_next"], {})
    assert 0 < seconds["seconds"] <= 30
    assert store.fetch(QUERIES["scheduler_due"], {"limit": 10}) == []
    due_at = now["now"] - timedelta(microseconds=1)
    store.fetch(QUERIES["schedule_remove"], {"name": "nightly"})
    schedule(store, next_run_at=due_at)
    (due,) = store.fetch(QUERIES["scheduler_due"], {"limit": 10})
    assert due["next_run_at"] == due_at and isinstance(due["now"], datetime)
    advance = {
        "name": "nightly", "due": due["next_run_at"], "fired_at": due["now"],
        "next_run_at": due_at + timedelta(days=1),
    }  # fmt: skip
    assert store.fetch(QUERIES["scheduler_advance"], advance) == [{"name": "nightly"}]
    assert store.fetch(QUERIES["scheduler_advance"], advance) == []
    assert get_schedule(store)["last_run_at"] == due["now"]


def test_upgrading_to_0003_marks_waiting_jobs_delayed(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    conn = sqlite3.connect(path)
    now = datetime.now(timezone.utc).timestamp()
    for version, text in sqlite_migration_files():
        if version >= "0003":
            break
        conn.executescript(text)
        conn.execute("INSERT INTO soniq_migrations VALUES (?, ?)", (version, now))
    for name, at in (("old.later", now + 3600), ("old.now", now - 60)):
        conn.execute(
            "INSERT INTO soniq_jobs (id, job_name, scheduled_at, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (new_job_id(), name, at, now, now),
        )
    conn.commit()
    conn.close()
    store = SqliteStore(path)
    assert store.setup() == [v for v in SHIPPED if v >= "0003"]
    [queue] = store.fetch(QUERIES["queue_status"], {})
    assert (queue["runnable"], queue["scheduled"]) == (1, 1)
    claimed = store.rows(QUERIES["claim_jobs"], {"queues": None, "limit": 10, "worker_id": "w"})
    assert [row[1] for row in claimed] == ["old.now"]
    store.close()


def test_finished_figures_weigh_the_minute_a_window_cuts(store: SqliteStore) -> None:
    for _ in range(3):  # again if a minute ends meanwhile (the buckets would move)
        start = datetime.now(timezone.utc).timestamp()
        minute = start // 60 * 60
        with store._lock:
            store._conn.execute("DELETE FROM soniq_stats")
            for back, done in ((0, 10), (1, 600), (2, 7), (60, 6000), (61, 10_000)):
                store._conn.execute(
                    "INSERT INTO soniq_stats (minute, queue, job_name, done) "
                    "VALUES (?, 'q', 't', ?)",
                    (minute - 60 * back, done),
                )
        [row] = store.fetch(QUERIES["queue_status"], {})
        end = datetime.now(timezone.utc).timestamp()
        if end // 60 * 60 == minute:
            break
    before, after = start - minute, end - minute
    assert 10 + 600 * (1 - after / 60) - 1 <= row["done_last_minute"]
    assert row["done_last_minute"] <= 10 + 600 * (1 - before / 60) + 1
    assert 617 + 6000 * (1 - after / 60) - 1 <= row["done"] <= 617 + 6000 * (1 - before / 60) + 1


def test_stats_flush_adds_to_the_current_minute(store: SqliteStore) -> None:
    rows = [
        {
            "queue": "q",
            "job_name": "t",
            "done": 2,
            "retried": 1,
            "dead": 0,
            "cancelled": 1,
            "runtime_sum": 0.5,
            "runtime_max": 0.4,
        }
    ]
    store.fetch(QUERIES["stats_flush"], {"rows": json.dumps(rows)})
    rows[0].update(done=3, runtime_max=0.1)
    store.fetch(QUERIES["stats_flush"], {"rows": json.dumps(rows)})
    [row] = store.fetch(QUERIES["queue_status"], {})
    assert (row["done"], row["failed"], row["cancelled"], row["done_last_minute"]) == (5, 2, 2, 5)
