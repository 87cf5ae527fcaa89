"""Concurrency and rate limits across real ``soniq worker`` processes and connections.

The handlers (the jobs module below, imported by every spawned worker) write a span
per attempt into a table of the test's own, on the database's clock:
``(key, job_id, attempt, pid, started, ended)``, ``started`` as the handler begins and
``ended`` as it returns. A span lies inside its job's ``processing`` interval, so a
limit the claim keeps shows in the spans, and the test computes what it checks
(overlaps, windows, gaps) in SQL. Producers enqueue through :func:`soniq.task_ref`
stubs that carry the same limits as the handlers, so the rows get the keys the
handlers' declarations render. Every wait has a deadline; no sleep stands in for one.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest

from soniq import Concurrency, RateLimit, Soniq, task_ref
from tests.acceptance.processes import SoniqProcess
from tests.acceptance.test_worker_process import Spawner

# Each test runs worker processes and waits on them with deadlines of its own, which
# may add up to more than the project's default timeout; this is a hang guard.
pytestmark = pytest.mark.timeout(240)

LIMITS_MODULE = '''
import os
import random
import threading
import time

import psycopg

from soniq import Concurrency, JobContext, RateLimit, RateLimited, Soniq

app = Soniq()

# One connection per process for the spans, shared by the handler threads.
_lock = threading.Lock()
_conn = None


def _one(query, params=()):
    global _conn
    with _lock:
        if _conn is None or _conn.closed:
            _conn = psycopg.connect(os.environ["SPANS_DATABASE_URL"], autocommit=True)
        return _conn.execute(query, params).fetchone()


def begin(ctx, key):
    return _one(
        "INSERT INTO spans (key, job_id, attempt, pid, started)"
        " VALUES (%s, %s, %s, %s, clock_timestamp()) RETURNING id",
        (key, ctx.job_id, ctx.attempt, os.getpid()),
    )[0]


def end(span):
    _one("UPDATE spans SET ended = clock_timestamp() WHERE id = %s RETURNING id", (span,))


@app.job(name="lim.pair", concurrency=Concurrency(2, key="{k}"))
def pair(ctx: JobContext, k: str) -> None:
    span = begin(ctx, k)
    time.sleep(random.uniform(0, 0.02))
    end(span)


@app.job(name="lim.hold", concurrency=Concurrency(2, key="{k}"))
def hold(ctx: JobContext, k: str, hold: bool = False) -> None:
    """Holds its slot for a minute on a first attempt with ``hold``, else is brief."""
    span = begin(ctx, k)
    time.sleep(60 if hold and ctx.attempt == 1 else 0.02)
    end(span)


@app.job(name="lim.one", concurrency=Concurrency(1, key="{k}"))
def one(ctx: JobContext, k: str, long: float = 0.0) -> int:
    """Takes ``long`` seconds on its first attempt, 20 ms otherwise; returns its pid."""
    span = begin(ctx, k)
    time.sleep(long if ctx.attempt == 1 and long else 0.02)
    end(span)
    return os.getpid()


@app.job(name="lim.rate", rate_limit=RateLimit(10, per=1, key="{k}"))
def rate(ctx: JobContext, k: str) -> None:
    end(begin(ctx, k))


@app.job(name="lim.burst", rate_limit=RateLimit(10, per=1, key="{k}", burst=5))
def burst(ctx: JobContext, k: str) -> None:
    end(begin(ctx, k))


@app.job(name="lim.polite", concurrency=Concurrency(1, key="{k}"))
def polite(ctx: JobContext, k: str, push_back: bool = False) -> None:
    """With ``push_back``, raises RateLimited(2) the first time it runs (whatever the
    attempt number says: a RateLimited attempt is refunded)."""
    span = begin(ctx, k)
    if push_back and _one(
        "INSERT INTO raised (job_id, at) VALUES (%s, clock_timestamp())"
        " ON CONFLICT DO NOTHING RETURNING job_id",
        (ctx.job_id,),
    ):
        end(span)
        raise RateLimited(retry_after=2, reason="told to slow down")
    time.sleep(0.01)
    end(span)


@app.job(name="plain.run")
def plain(ctx: JobContext, n: int) -> None:
    end(begin(ctx, None))


# A queue given limits of its own by the test (app.queues.set_limits("gated", ...)).
@app.job(name="gated.plain", queue="gated")
def gated_plain(ctx: JobContext, n: int) -> None:
    span = begin(ctx, "gated")
    time.sleep(random.uniform(0, 0.02))
    end(span)


@app.job(name="gated.hold", queue="gated")
def gated_hold(ctx: JobContext, hold: bool = False) -> None:
    """Holds a slot of the queue for a minute on a first attempt with ``hold``."""
    span = begin(ctx, "gated")
    time.sleep(60 if hold and ctx.attempt == 1 else 0.02)
    end(span)


@app.job(name="gated.keyed", queue="gated", concurrency=Concurrency(1, key="{k}"))
def gated_keyed(ctx: JobContext, k: str) -> None:
    span = begin(ctx, "gated:" + k)
    time.sleep(random.uniform(0, 0.02))
    end(span)
'''

TABLES = """
CREATE TABLE spans (
    id      bigserial PRIMARY KEY,
    key     text,
    job_id  uuid NOT NULL,
    attempt int NOT NULL,
    pid     int NOT NULL,
    started timestamptz NOT NULL,
    ended   timestamptz
);
CREATE TABLE raised (job_id uuid PRIMARY KEY, at timestamptz NOT NULL);
"""

# The producer's stubs: the same names and limits as the handlers above.
PAIR = task_ref("lim.pair", concurrency=Concurrency(2, key="{k}"))
HOLD = task_ref("lim.hold", concurrency=Concurrency(2, key="{k}"))
ONE = task_ref("lim.one", concurrency=Concurrency(1, key="{k}"))
RATE = task_ref("lim.rate", rate_limit=RateLimit(10, per=1, key="{k}"))
BURST = task_ref("lim.burst", rate_limit=RateLimit(10, per=1, key="{k}", burst=5))
POLITE = task_ref("lim.polite", concurrency=Concurrency(1, key="{k}"))
GATED_KEYED = task_ref("gated.keyed", default_queue="gated", concurrency=Concurrency(1, key="{k}"))

# The most spans of one key running at once (``ended`` NULL: still running). At equal
# instants an end counts before a start: a freed slot is taken by a later claim, so
# that is a hand-over, not an overlap.
MAX_OVERLAP = """
WITH ev AS (
    SELECT key, started AS t, 1 AS d FROM spans WHERE {where}
    UNION ALL
    SELECT key, COALESCE(ended, 'infinity'), -1 FROM spans WHERE {where}
), running AS (
    SELECT key, sum(d) OVER (PARTITION BY key ORDER BY t, d
                             ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS n
    FROM ev
)
SELECT key, max(n)::int FROM running GROUP BY key ORDER BY 2 DESC, 1
"""


class LimitsSpawner(Spawner):
    """A :class:`Spawner` whose workers import :data:`LIMITS_MODULE` and write spans."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        (tmp_path / "limits_jobs.py").write_text(LIMITS_MODULE)

    def start(
        self,
        database_url: str,
        *args: str,
        global_args: Sequence[str] = (),
        **env_overrides: str,
    ) -> SoniqProcess:
        env = {
            "SONIQ_JOBS_MODULES": "limits_jobs",
            "SPANS_DATABASE_URL": database_url,
            **env_overrides,
        }
        return super().start(database_url, *args, global_args=global_args, **env)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[LimitsSpawner]:
    spawn = LimitsSpawner(tmp_path)
    try:
        yield spawn
    finally:
        spawn.close()


@pytest.fixture
async def url(client: Soniq, database_url: str) -> str:
    """The test's database, with the schema and the spans tables."""
    await client.ensure_initialized()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(TABLES)
    return database_url


def rows(
    url: str, query: str, params: Sequence[Any] | dict[str, Any] = ()
) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def value(url: str, query: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
    (row,) = rows(url, query, params)
    return row[0]


def overlaps(url: str, where: str = "true", params: Sequence[Any] = ()) -> dict[str, int]:
    """The most spans running at once, per key, among the spans ``where`` selects."""
    return dict(rows(url, MAX_OVERLAP.format(where=where), tuple(params) * 2))


def queue_overlap(url: str, like: str) -> int:
    """The most spans running at once among those whose key is LIKE ``like``, as one
    (a queue's jobs, whatever their keys)."""
    query = MAX_OVERLAP.format(where="key LIKE %s").replace("SELECT key, ", "SELECT 'q' AS key, ")
    ((_, most),) = rows(url, query, (like, like))
    return int(most)


def spans_started(url: str, key: str) -> int:
    return int(value(url, "SELECT count(*) FROM spans WHERE key = %s", (key,)))


def job_states(url: str, ids: Sequence[str]) -> dict[tuple[str, int], int]:
    """How many of the jobs ``ids`` are in each (status, attempts)."""
    found = rows(
        url,
        "SELECT status, attempts, count(*)::int FROM soniq_jobs WHERE id = ANY(%s::uuid[])"
        " GROUP BY 1, 2",
        (list(ids),),
    )
    return {(status, attempts): n for status, attempts, n in found}


def all_done(url: str, ids: Sequence[str]) -> bool:
    return job_states(url, ids) == {("done", 1): len(ids)}


async def started(fleet: LimitsSpawner, *workers: SoniqProcess) -> None:
    for worker in workers:
        await worker.wait_log("started", timeout=30)


# --------------------------------------------------------------------------- tests


async def test_no_key_ever_runs_more_than_its_limit_across_the_fleet(
    client: Soniq, url: str, fleet: LimitsSpawner
) -> None:
    keys = [f"c{i:02d}" for i in range(20)]
    ids = await client.enqueue_many(PAIR, [{"k": keys[i % 20]} for i in range(600)])
    workers = [fleet.start(url, "--concurrency", "16") for _ in range(3)]
    await started(fleet, *workers)

    await fleet.until(lambda: all_done(url, ids), 120, "the 600 jobs to finish", interval=0.5)

    per_key = overlaps(url)
    assert set(per_key) == set(keys)
    assert max(per_key.values()) <= 2, per_key
    assert max(per_key.values()) == 2, f"no key ever ran two at once: {per_key}"  # not vacuous
    assert value(url, "SELECT count(DISTINCT pid) FROM spans") == 3  # the whole fleet ran jobs
    twice = rows(url, "SELECT job_id FROM spans GROUP BY job_id HAVING count(*) <> 1")
    assert twice == []
    assert value(url, "SELECT count(*) FROM spans") == 600
    assert all(w.alive() for w in workers), fleet.describe()
    assert "Traceback" not in "".join(w.log() for w in workers), fleet.describe()


async def test_a_limited_queue_never_runs_more_than_its_limit_across_the_fleet(
    client: Soniq, url: str, fleet: LimitsSpawner
) -> None:
    """Four workers of one slot each, a queue limited to 3 at once, its jobs with and
    without keys (each key limited to 1): the queue's overlap and each key's, in SQL
    from the spans. One slot per worker, so the queue reaches its limit only with
    three processes running its jobs at once, and only the limit keeps the fourth out."""
    await client.queues.set_limits("gated", concurrency=3)
    workers = [fleet.start(url, "--concurrency", "1") for _ in range(4)]
    await started(fleet, *workers)
    plain_ids = await client.enqueue_many(
        "gated.plain", [{"n": i} for i in range(90)], queue="gated"
    )
    keyed_ids = await client.enqueue_many(GATED_KEYED, [{"k": f"k{i % 3}"} for i in range(60)])

    ids = plain_ids + keyed_ids
    await fleet.until(lambda: all_done(url, ids), 120, "the 150 jobs to finish", interval=0.5)

    assert queue_overlap(url, "gated%") == 3  # the queue's limit: reached, never passed
    per_key = overlaps(url, "key LIKE %s", ("gated:%",))
    assert per_key == {"gated:k0": 1, "gated:k1": 1, "gated:k2": 1}, per_key
    assert value(url, "SELECT count(*) FROM spans") == 150
    assert value(url, "SELECT count(DISTINCT job_id) FROM spans") == 150
    assert value(url, "SELECT count(DISTINCT pid) FROM spans") >= 3
    assert all(w.alive() for w in workers), fleet.describe()
    assert "Traceback" not in "".join(w.log() for w in workers), fleet.describe()


async def test_concurrent_gated_claims_never_admit_two_into_a_single_slot(
    client: Soniq, url: str
) -> None:
    """16 connections call the gated claim at the same moment, 30 times over, for a
    queue limited to one job at once: every round admits exactly one."""
    rounds, callers = 30, 16
    ids = await client.enqueue_many("t.race", [{"n": i} for i in range(50)], queue="solo")
    await client.queues.set_limits("solo", concurrency=1)

    barrier = threading.Barrier(callers, timeout=30)
    got: list[list[int]] = [[0] * callers for _ in range(rounds)]
    counted: list[int] = []
    errors: list[BaseException] = []

    def caller(index: int) -> None:
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("SELECT 1")
                for r in range(rounds):
                    barrier.wait()
                    claimed = conn.execute(
                        "SELECT * FROM soniq_claim_gated(gen_random_uuid(), NULL, NULL, 64, 10)"
                    ).fetchall()
                    got[r][index] = sum(1 for row in claimed if row[0] is not None)
                    barrier.wait()
                    if index == 0:
                        counted.append(
                            conn.execute(
                                "SELECT count(*) FROM soniq_jobs WHERE status = 'processing'"
                            ).fetchone()[0]  # type: ignore[index]
                        )
                        conn.execute(
                            "UPDATE soniq_jobs SET status = 'queued', attempts = 0,"
                            " worker_id = NULL, started_at = NULL WHERE status = 'processing'"
                        )
                    barrier.wait()
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    def race() -> None:
        threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)

    await anyio.to_thread.run_sync(race)

    assert not errors, errors[0]
    assert counted == [1] * rounds, counted
    assert [sum(r) for r in got] == [1] * rounds, got
    assert len({r.index(1) for r in got}) > 1  # not one caller always winning
    assert job_states(url, ids) == {("queued", 0): 50}


async def test_concurrent_claims_never_admit_two_into_a_single_slot(
    client: Soniq, url: str
) -> None:
    """16 connections call the limited claim at the same moment, 50 times over, for one
    key with a single slot and 100 jobs: every round admits exactly one."""
    rounds, callers = 50, 16
    ids = await client.enqueue_many("t.race", [{"n": i} for i in range(100)], limit_key="g:k")
    assert value(url, "SELECT count(*) FROM soniq_jobs WHERE limit_key = 'g:k'") == 100
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO soniq_limit_groups (name, concurrency) VALUES ('g', 1)")

    barrier = threading.Barrier(callers, timeout=30)
    got: list[list[int]] = [[0] * callers for _ in range(rounds)]
    errors: list[BaseException] = []

    def caller(index: int) -> None:
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("SELECT 1")  # connected before the first barrier
                for r in range(rounds):
                    barrier.wait()  # all claim together
                    claimed = conn.execute(
                        "SELECT * FROM soniq_claim_limited(gen_random_uuid(), NULL, NULL, 64, 10)"
                    ).fetchall()
                    got[r][index] = sum(1 for row in claimed if row[0] is not None)
                    barrier.wait()  # every claim has returned
                    if index == 0:  # reset for the next round, the others waiting
                        counted.append(
                            conn.execute(
                                "SELECT count(*) FROM soniq_jobs"
                                " WHERE limit_key = 'g:k' AND status = 'processing'"
                            ).fetchone()[0]  # type: ignore[index]
                        )
                        conn.execute(
                            "UPDATE soniq_jobs SET status = 'queued', attempts = 0,"
                            " worker_id = NULL, started_at = NULL WHERE status = 'processing'"
                        )
                    barrier.wait()
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    counted: list[int] = []

    def race() -> None:
        threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)

    await anyio.to_thread.run_sync(race)

    assert not errors, errors[0]
    assert counted == [1] * rounds, counted
    assert [sum(r) for r in got] == [1] * rounds, got
    # Not one caller always winning: the race is real.
    winners = {r.index(1) for r in got}
    assert len(winners) > 1, winners
    assert job_states(url, ids) == {("queued", 0): 100}


async def test_a_worker_under_repeatable_read_refuses_to_claim_limited_jobs(
    client: Soniq, url: str, fleet: LimitsSpawner
) -> None:
    """The snapshot trap: under REPEATABLE READ the limited claim would count a key's
    running jobs in a stale snapshot, so the server refuses it and the worker says so.

    The isolation level is the database's default here, not PGOPTIONS in the worker's
    environment: the worker's own pool passes libpq ``options`` of its own, which
    replace PGOPTIONS, so PGOPTIONS never reaches its claim connections.
    """
    limited = await client.enqueue_many(PAIR, [{"k": f"s{i % 3}"} for i in range(6)])
    with psycopg.connect(url, autocommit=True) as conn:
        database = conn.info.dbname
        conn.execute(
            f"ALTER DATABASE \"{database}\" SET default_transaction_isolation = 'repeatable read'"
        )
    snapshot = fleet.start(url, "--concurrency", "4")
    await started(fleet, snapshot)
    plain = await client.enqueue_many("plain.run", [{"n": i} for i in range(5)])

    await fleet.until(lambda: all_done(url, plain), 30, "the unlimited jobs to run")

    # Refused at least twice: the worker kept trying (each poll) and never claimed.
    await fleet.until(
        lambda: snapshot.log().count("SONIQ_LIMITS_NEED_READ_COMMITTED") >= 2,
        30,
        "the worker to refuse the limited claim again",
    )
    assert job_states(url, limited) == {("queued", 0): 6}, fleet.describe()
    assert value(url, "SELECT count(*) FROM spans WHERE key IS NOT NULL") == 0
    assert "above READ COMMITTED" in snapshot.log()
    assert snapshot.alive(), fleet.describe()

    # The jobs were runnable all along: a worker connecting under READ COMMITTED runs
    # them (the first worker's connections keep their level, and keep refusing).
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{database}" RESET default_transaction_isolation')
    fleet.start(url, "--concurrency", "4")
    await fleet.until(lambda: all_done(url, limited), 30, "a READ COMMITTED worker to run them")
    assert max(overlaps(url, "key IS NOT NULL").values()) <= 2
    assert snapshot.alive(), fleet.describe()


async def test_a_killed_workers_slots_stay_taken_until_recovery(
    client: Soniq, url: str, fleet: LimitsSpawner
) -> None:
    held = await client.enqueue_many(HOLD, [{"k": "K", "hold": True}] * 2)
    doomed = fleet.start(url, "--concurrency", "4", SONIQ_HEARTBEAT_TIMEOUT="3")
    await fleet.until(lambda: spans_started(url, "K") == 2, 30, "K's two slots to be taken")
    rest = await client.enqueue_many(HOLD, [{"k": "K"}] * 10)
    # A second worker that would take K's jobs if the slots were free.
    survivor = fleet.start(
        url, "--concurrency", "4", SONIQ_HEARTBEAT_TIMEOUT="3", SONIQ_CLEANUP_INTERVAL="0.5"
    )
    await started(fleet, survivor)
    assert job_states(url, rest) == {("queued", 0): 10}

    doomed.proc.kill()
    assert await doomed.wait_exit(10) == -signal.SIGKILL

    # Poll until recovery has requeued both dead attempts; the last poll that still
    # saw both of them processing is a moment at which both slots were taken.
    last_held: list[datetime] = []

    def recovered() -> bool:
        at, holding = rows(
            url,
            "SELECT statement_timestamp(), count(*) FROM soniq_jobs"
            " WHERE id = ANY(%s::uuid[]) AND status = 'processing' AND attempts = 1",
            (held,),
        )[0]
        if holding == 2:
            last_held.append(at)
            return False
        return True

    await fleet.until(recovered, 30, "recovery of the dead worker's jobs")
    assert last_held, "recovered before the first poll"
    await fleet.until(lambda: all_done_or_retried(url, held, rest), 30, "K to resume and finish")

    # No K job started while the dead attempts still held both slots.
    early = rows(
        url,
        "SELECT job_id, started FROM spans WHERE key = 'K' AND NOT (job_id = ANY(%s::uuid[])"
        " AND attempt = 1) AND started <= %s",
        (held, last_held[-1]),
    )
    assert early == [], (early, last_held[-1])
    # The dead attempts' spans never ended; among the others K never ran more than two.
    assert max(overlaps(url, "key = 'K' AND ended IS NOT NULL").values()) <= 2
    assert job_states(url, held) == {("done", 2): 2}
    assert job_states(url, rest) == {("done", 1): 10}
    await survivor.wait_log("recovered 1 stale worker(s): 2 job(s) requeued")


async def test_a_killed_workers_jobs_hold_their_queues_slots_until_recovery(
    client: Soniq, url: str, fleet: LimitsSpawner
) -> None:
    await client.queues.set_limits("gated", concurrency=2)
    held = await client.enqueue_many("gated.hold", [{"hold": True}] * 2, queue="gated")
    doomed = fleet.start(url, "--concurrency", "4", SONIQ_HEARTBEAT_TIMEOUT="3")
    await fleet.until(lambda: spans_started(url, "gated") == 2, 30, "the queue's two slots")
    rest = await client.enqueue_many("gated.hold", [{}] * 10, queue="gated")
    survivor = fleet.start(
        url, "--concurrency", "4", SONIQ_HEARTBEAT_TIMEOUT="3", SONIQ_CLEANUP_INTERVAL="0.5"
    )
    await started(fleet, survivor)
    assert job_states(url, rest) == {("queued", 0): 10}

    doomed.proc.kill()
    assert await doomed.wait_exit(10) == -signal.SIGKILL
    last_held: list[datetime] = []

    def recovered() -> bool:
        at, holding = rows(
            url,
            "SELECT statement_timestamp(), count(*) FROM soniq_jobs"
            " WHERE id = ANY(%s::uuid[]) AND status = 'processing' AND attempts = 1",
            (held,),
        )[0]
        if holding == 2:
            last_held.append(at)
            return False
        return True

    await fleet.until(recovered, 30, "recovery of the dead worker's jobs")
    assert last_held, "recovered before the first poll"
    await fleet.until(lambda: all_done_or_retried(url, held, rest), 30, "the queue to finish")
    # No job of the queue started while the dead attempts held both of its slots.
    early = rows(
        url,
        "SELECT job_id, started FROM spans WHERE key = 'gated' AND NOT (job_id = ANY(%s::uuid[])"
        " AND attempt = 1) AND started <= %s",
        (held, last_held[-1]),
    )
    assert early == [], (early, last_held[-1])
    assert max(overlaps(url, "key = 'gated' AND ended IS NOT NULL").values()) <= 2
    assert job_states(url, rest) == {("done", 1): 10}


def all_done_or_retried(url: str, retried: Sequence[str], rest: Sequence[str]) -> bool:
    """Whether ``retried`` are done on their second attempt and ``rest`` on their first."""
    return job_states(url, retried) == {("done", 2): len(retried)} and all_done(url, rest)


async def test_a_stopped_worker_wakes_as_a_fenced_zombie(
    client: Soniq, url: str, fleet: LimitsSpawner
) -> None:
    (zombie_job,) = await client.enqueue_many(ONE, [{"k": "K", "long": 8.0}])
    a = fleet.start(url, "--concurrency", "4")
    await fleet.until(lambda: spans_started(url, "K") == 1, 30, "A to start K's long job")
    meanwhile = await client.enqueue_many(ONE, [{"k": "K"}] * 20)
    b = fleet.start(url, "--concurrency", "4", SONIQ_CLEANUP_INTERVAL="0.5")
    await started(fleet, b)
    assert spans_started(url, "K") == 1  # the slot is A's

    a.proc.send_signal(signal.SIGSTOP)
    try:
        # B declares A dead (3 s without a heartbeat), requeues the job and runs it again.
        await fleet.until(
            lambda: value(
                url,
                "SELECT count(*) FROM spans WHERE job_id = %s AND attempt = 2 AND pid = %s",
                (zombie_job, b.proc.pid),
            ),
            30,
            "B to recover and re-run the job A holds",
        )
        await fleet.until(
            lambda: spans_started(url, "K") >= 5, 30, "B to run K's next jobs meanwhile"
        )
    finally:
        a.proc.send_signal(signal.SIGCONT)

    # A's handler returns; its completion no longer matches the row and is dropped.
    await a.wait_log("their completions were dropped", timeout=30)
    await fleet.until(
        lambda: all_done_or_retried(url, [zombie_job], meanwhile), 60, "K's first jobs to finish"
    )
    record = await client.get_job(zombie_job)
    assert record is not None
    assert (record["status"], record["attempts"], record["result"]) == ("done", 2, b.proc.pid)
    (zombie_pid, zombie_ended) = rows(
        url, "SELECT pid, ended FROM spans WHERE job_id = %s AND attempt = 1", (zombie_job,)
    )[0]
    assert (zombie_pid, zombie_ended is not None) == (a.proc.pid, True)  # it did finish, on A

    # Both workers, A awake again, share K's next jobs, one at a time.
    after = await client.enqueue_many(ONE, [{"k": "K"}] * 50)
    await fleet.until(lambda: all_done(url, after), 60, "K's next 50 jobs to finish")
    assert overlaps(url, "key = 'K' AND started > %s", (zombie_ended,)) == {"K": 1}
    assert value(url, "SELECT count(*) FROM spans WHERE started > %s", (zombie_ended,)) >= 50
    # The documented exception is the zombie's own overlap with its requeued copy (and
    # what ran after it meanwhile): without the zombie, K never ran two at once.
    not_zombie = "key = 'K' AND NOT (job_id = %s AND attempt = 1)"
    assert overlaps(url, not_zombie, (zombie_job,)) == {"K": 1}
    assert overlaps(url, "key = 'K'")["K"] == 2, "the zombie never overlapped anything"
    assert value(url, "SELECT count(*) FROM spans WHERE key = 'K'") == 72
    assert a.alive() and b.alive(), fleet.describe()


async def rate_run(
    client: Soniq, url: str, fleet: LimitsSpawner, ref: Any, jobs: int
) -> tuple[int, float, float, list[SoniqProcess]]:
    """Run ``jobs`` jobs of one key on 3 workers; the most starts (``started_at``) in
    any half-open 1-s window, the achieved rate, the longest gap between two starts
    (seconds), and the workers.

    The workers poll every 30 s, so a start that waited for a poll instead of the
    worker's own wake-up at the key's eligible time shows as a gap of 30 s: the
    liveness bounds below can stay loose enough for a loaded machine and still tell
    the two apart."""
    workers = [fleet.start(url, "--concurrency", "4", SONIQ_POLL_INTERVAL="30") for _ in range(3)]
    await started(fleet, *workers)
    ids = await client.enqueue_many(ref, [{"k": "R"}] * jobs)
    await fleet.until(lambda: all_done(url, ids), 60, f"the {jobs} jobs to run", interval=0.25)
    most = value(
        url,
        "SELECT max((SELECT count(*) FROM soniq_jobs AS o WHERE o.id = ANY(%(ids)s::uuid[])"
        "  AND o.started_at >= j.started_at AND o.started_at < j.started_at + interval '1 s'))"
        " FROM soniq_jobs AS j WHERE j.id = ANY(%(ids)s::uuid[])",
        {"ids": ids},
    )
    span = value(
        url,
        "SELECT EXTRACT(EPOCH FROM max(started_at) - min(started_at))::float8"
        " FROM soniq_jobs WHERE id = ANY(%s::uuid[])",
        (ids,),
    )
    gap = value(
        url,
        "SELECT EXTRACT(EPOCH FROM max(g))::float8 FROM (SELECT started_at"
        " - lag(started_at) OVER (ORDER BY started_at) AS g FROM soniq_jobs"
        " WHERE id = ANY(%s::uuid[])) AS t",
        (ids,),
    )
    return int(most), (jobs - 1) / span, gap, workers


async def test_a_rate_limit_holds_in_every_window_across_the_fleet(
    client: Soniq, url: str, fleet: LimitsSpawner
) -> None:
    most, rate, gap, workers = await rate_run(client, url, fleet, RATE, 100)
    assert most <= 10, most
    # Paced one every 100 ms with no tolerance (burst 1), a start that comes late is
    # lost for good, so the worker must wake when the key is eligible, timed from its
    # claim (not from the reply). A key that became eligible never waits for a poll
    # (30 s here) or the next job to wake a worker: no gap near a poll interval, and
    # the rate stays near the limit (loose bounds: the machine is shared).
    assert rate >= 6.0, rate
    assert gap < 3.0, gap
    assert value(url, "SELECT count(DISTINCT pid) FROM spans") > 1  # shared by the fleet
    assert all(w.alive() for w in workers), fleet.describe()


async def test_a_burst_allows_limit_plus_burst_minus_one_per_window(
    client: Soniq, url: str, fleet: LimitsSpawner
) -> None:
    most, rate, gap, workers = await rate_run(client, url, fleet, BURST, 100)
    assert most <= 14, most
    assert most > 10, f"the burst was never used: at most {most} starts in a window"
    assert rate >= 6.0, rate
    assert gap < 3.0, gap
    assert all(w.alive() for w in workers), fleet.describe()


async def test_rate_limited_blocks_the_key_for_every_worker(
    client: Soniq, url: str, fleet: LimitsSpawner
) -> None:
    workers = [fleet.start(url, "--concurrency", "4") for _ in range(3)]
    await started(fleet, *workers)
    (pushed,) = await client.enqueue_many(POLITE, [{"k": "K", "push_back": True}])
    # The others, queued behind it, and an unrelated key that must keep running.
    others = await client.enqueue_many(POLITE, [{"k": "K"}] * 20)
    free = await client.enqueue_many(POLITE, [{"k": "F"}] * 20)

    await fleet.until(lambda: all_done(url, [*others, *free]), 60, "every job to finish")
    await fleet.until(lambda: all_done(url, [pushed]), 30, "the pushed-back job to run again")

    raised_at = value(url, "SELECT at FROM raised WHERE job_id = %s", (pushed,))
    blocked_until = value(
        url, "SELECT blocked_until FROM soniq_limit_keys WHERE key = 'lim.polite:K'"
    )
    assert raised_at + timedelta(seconds=2) <= blocked_until < raised_at + timedelta(seconds=3)
    # No K job started from the raise until the block ran out, on any worker...
    during = rows(
        url,
        "SELECT job_id, attempt, started, pid FROM spans WHERE key = 'K'"
        " AND started >= %s AND started < %s",
        (raised_at, blocked_until),
    )
    assert during == [], (during, raised_at, blocked_until)
    # ...and K resumed once it had.
    first_after = value(
        url, "SELECT min(started) FROM spans WHERE key = 'K' AND started > %s", (raised_at,)
    )
    assert first_after - blocked_until < timedelta(seconds=5), (first_after, blocked_until)
    # The push-back cost no attempt: it ran twice and its row says attempt 1.
    assert value(url, "SELECT count(*) FROM spans WHERE job_id = %s", (pushed,)) == 2
    assert value(
        url, "SELECT array_agg(attempt ORDER BY started) FROM spans WHERE job_id = %s", (pushed,)
    ) == [1, 1]
    record = await client.get_job(pushed)
    assert record is not None
    assert (record["status"], record["attempts"]) == ("done", 1)
    assert record["last_error"] == "RATE_LIMITED: retry after 2s: told to slow down", record
