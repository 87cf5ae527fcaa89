"""`soniq worker` as a real process: run-once, signals, crashes, recovery, NOTIFY, restarts.

Each test writes a jobs module into its tmp_path and runs ``python -m soniq worker``
there as a subprocess. Handlers leave marker files in the directory named by
$JOBS_MARK_DIR (one also writes to a table of its own), so a test can see what ran;
job state is read back through the public API. Every wait has a deadline, and a
timed-out wait shows each worker's exit status and stderr.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest

from soniq import Soniq
from tests.acceptance.conftest import PrivatePostgres
from tests.acceptance.processes import SoniqProcess, start_soniq, until

JOBS_MODULE = '''
import asyncio
import os
import signal
import time
from pathlib import Path

import psycopg

from soniq import JobContext, Soniq

app = Soniq()
MARKS = Path(os.environ["JOBS_MARK_DIR"])


def mark(name: str) -> None:
    (MARKS / name).touch()


@app.job(name="t.record")
def record(key: str) -> str:
    mark(f"done-{key}")
    return key


@app.job(name="t.block")
def block(ctx: JobContext, key: str, block_attempts: int = 1) -> None:
    """Blocks for 30 s on its first ``block_attempts`` attempts, then finishes."""
    mark(f"started-{key}-{ctx.attempt}")
    if ctx.attempt <= block_attempts:
        time.sleep(30)
    mark(f"done-{key}-{ctx.attempt}")


@app.job(name="t.brief")
def brief(ctx: JobContext, key: str) -> str:
    """A sync job that is still running for a moment after it starts."""
    mark(f"started-{key}-{ctx.attempt}")
    time.sleep(2)
    mark(f"done-{key}-{ctx.attempt}")
    return key


@app.job(name="t.ablock")
async def ablock(ctx: JobContext, key: str, block_attempts: int = 1) -> None:
    """The async twin of t.block."""
    mark(f"started-{key}-{ctx.attempt}")
    if ctx.attempt <= block_attempts:
        await asyncio.sleep(30)
    mark(f"done-{key}-{ctx.attempt}")


@app.job(name="t.anap")
async def anap(ctx: JobContext, key: str, seconds: float) -> str:
    """An async job that takes ``seconds``."""
    mark(f"started-{key}-{ctx.attempt}")
    await asyncio.sleep(seconds)
    mark(f"done-{key}-{ctx.attempt}")
    return key


@app.job(name="t.suicide", retries=1)
def suicide(ctx: JobContext) -> None:
    mark(f"suicide-{ctx.attempt}")
    os.kill(os.getpid(), signal.SIGKILL)


@app.job(name="t.stamp")
async def stamp(ctx: JobContext, n: int) -> None:
    """Writes when its handler started (the database's clock), then takes 10 ms."""
    async with await psycopg.AsyncConnection.connect(
        os.environ["SONIQ_DATABASE_URL"], autocommit=True
    ) as conn:
        await conn.execute(
            "INSERT INTO starts (id, queue, at) VALUES (%s, %s, clock_timestamp())",
            (ctx.job_id, ctx.queue),
        )
    await asyncio.sleep(0.01)


@app.job(name="t.seen")
def seen(ctx: JobContext, n: int) -> None:
    time.sleep(0.02)
    with psycopg.connect(os.environ["SONIQ_DATABASE_URL"], autocommit=True) as conn:
        conn.execute("INSERT INTO seen (id) VALUES (%s) ON CONFLICT DO NOTHING", (ctx.job_id,))
'''

FAST_TIMINGS = {
    "SONIQ_HEARTBEAT_INTERVAL": "0.5",
    "SONIQ_HEARTBEAT_TIMEOUT": "3",
    "SONIQ_CLEANUP_INTERVAL": "1",
    "SONIQ_POLL_INTERVAL": "1",
    "SONIQ_ERROR_RETRY_DELAY": "0.5",
    "SONIQ_LOG_LEVEL": "INFO",
}

# How long the private server stays down in the restart test.
OUTAGE_SECONDS = 1.0


class Spawner:
    """Starts workers in ``tmp_path``; kills whatever is left at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.marks = tmp_path / "marks"
        self.marks.mkdir()
        (tmp_path / "jobs_mod.py").write_text(JOBS_MODULE)
        self.workers: list[SoniqProcess] = []

    def start(
        self,
        database_url: str,
        *args: str,
        global_args: Sequence[str] = (),
        **env_overrides: str,
    ) -> SoniqProcess:
        """Run ``python -m soniq [global_args] worker [args]`` with fast timings."""
        env = {
            **FAST_TIMINGS,
            "SONIQ_DATABASE_URL": database_url,
            "SONIQ_JOBS_MODULES": "jobs_mod",
            "JOBS_MARK_DIR": str(self.marks),
            **env_overrides,
        }
        name = f"worker{len(self.workers) + 1}"
        worker = start_soniq(self.tmp_path, name, ["worker", *args], env, global_args)
        self.workers.append(worker)
        return worker

    async def until(
        self,
        predicate: Callable[[], object],
        timeout: float,  # noqa: ASYNC109
        what: str,
        interval: float = 0.05,
    ) -> None:
        """:func:`until`, describing every worker started so far on failure."""
        await until(predicate, timeout, what, self.workers, interval)

    def describe(self) -> str:
        return "\n".join(worker.describe() for worker in self.workers)

    def marked(self, name: str) -> bool:
        return (self.marks / name).exists()

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()


@pytest.fixture
def spawner(tmp_path: Path) -> Iterator[Spawner]:
    spawn = Spawner(tmp_path)
    try:
        yield spawn
    finally:
        spawn.close()


async def job(app: Soniq, job_id: str) -> dict[str, Any]:
    found = await app.get_job(job_id)
    assert found is not None, f"job {job_id} vanished"
    return found


async def status_is(app: Soniq, job_id: str, status: str) -> bool:
    return bool((await job(app, job_id))["status"] == status)


async def reported(app: Soniq, **expected: int) -> bool:
    """Whether status() shows the default queue's finished figures as ``expected``."""
    queues = {q["queue"]: q for q in (await app.status())["queues"]}
    row = queues.get("default", {})
    return all(row.get(key) == value for key, value in expected.items())


def worker_rows(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM soniq_workers").fetchone()
    assert row is not None
    return int(row[0])


# --------------------------------------------------------------------------- tests


async def test_run_once_processes_runnable_jobs_and_exits(
    client: Soniq, database_url: str, spawner: Spawner
) -> None:
    ids = [await client.enqueue("t.record", args={"key": f"k{i}"}) for i in range(10)]
    later = await client.schedule("t.record", 3600, args={"key": "later"})

    worker = spawner.start(database_url, "--run-once", "--concurrency", "3")

    assert await worker.wait_exit(30) == 0, worker.describe()
    for i, job_id in enumerate(ids):
        record = await job(client, job_id)
        assert (record["status"], record["attempts"]) == ("done", 1), worker.describe()
        assert record["result"] == f"k{i}"
        assert spawner.marked(f"done-k{i}")
    assert await status_is(client, later, "queued")  # not runnable yet
    assert not spawner.marked("done-later")
    assert worker_rows(database_url) == 0, worker.describe()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_a_signal_stops_run_once_gracefully(
    client: Soniq, database_url: str, spawner: Spawner, sig: signal.Signals
) -> None:
    slow = await client.enqueue("t.ablock", args={"key": "slow"})
    # No grace: the running async job is requeued at once.
    worker = spawner.start(database_url, "--run-once", SONIQ_SHUTDOWN_TIMEOUT="0")
    await spawner.until(lambda: spawner.marked("started-slow-1"), 15, "the slow job to start")

    worker.proc.send_signal(sig)

    assert await worker.wait_exit(10) == 0, worker.describe()
    interrupted = await job(client, slow)
    assert (interrupted["status"], interrupted["attempts"]) == ("queued", 0), worker.describe()
    assert f"{sig.name} received" in worker.log()
    assert "Traceback" not in worker.log(), worker.describe()
    assert worker_rows(database_url) == 0, worker.describe()


async def test_sigterm_requeues_a_running_async_job_and_exits_cleanly(
    client: Soniq, database_url: str, spawner: Spawner
) -> None:
    task = "t.ablock"
    worker = spawner.start(database_url, "--concurrency", "2", SONIQ_SHUTDOWN_TIMEOUT="0")
    quick = await client.enqueue("t.record", args={"key": "quick"})
    await spawner.until(lambda: status_is(client, quick, "done"), 15, "the quick job to finish")
    slow = await client.enqueue(task, args={"key": "slow"})
    await spawner.until(lambda: spawner.marked("started-slow-1"), 15, "the slow job to start")

    worker.proc.send_signal(signal.SIGTERM)

    assert await worker.wait_exit(10) == 0, worker.describe()
    interrupted = await job(client, slow)
    assert (interrupted["status"], interrupted["attempts"]) == ("queued", 0), worker.describe()
    assert interrupted["worker_id"] is None
    assert await status_is(client, quick, "done")
    assert worker_rows(database_url) == 0, worker.describe()
    assert "SIGTERM received" in worker.log()
    assert not spawner.marked("done-slow-1")


async def test_sigterm_lets_a_running_sync_job_finish_once(
    client: Soniq, database_url: str, spawner: Spawner
) -> None:
    # A thread cannot be interrupted: requeueing its job would run it twice. The
    # worker waits for it instead and records its real outcome.
    worker = spawner.start(database_url, "--concurrency", "2")
    job_id = await client.enqueue("t.brief", args={"key": "sync"})
    await spawner.until(lambda: spawner.marked("started-sync-1"), 15, "the sync job to start")

    worker.proc.send_signal(signal.SIGTERM)

    assert await worker.wait_exit(15) == 0, worker.describe()
    record = await job(client, job_id)
    assert (record["status"], record["attempts"], record["result"]) == ("done", 1, "sync")
    assert spawner.marked("done-sync-1")
    assert worker_rows(database_url) == 0, worker.describe()


async def test_sigterm_during_a_claim_is_not_lost(database_url: str, spawner: Spawner) -> None:
    worker = spawner.start(database_url, SONIQ_POLL_INTERVAL="30")
    await worker.wait_log("LISTEN soniq_new_job", timeout=15)
    with (
        psycopg.connect(database_url) as locker,
        psycopg.connect(database_url, autocommit=True) as observer,
    ):
        # Hold the claim: it needs a row lock on soniq_jobs, which this lock blocks.
        locker.execute("LOCK TABLE soniq_jobs IN ACCESS EXCLUSIVE MODE")
        observer.execute("SELECT pg_notify('soniq_new_job', 'default')")

        def claim_is_blocked() -> bool:
            row = observer.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE '%SET status = ''processing''%'"
            ).fetchone()
            return row is not None and row[0] > 0

        await spawner.until(claim_is_blocked, 10, "the worker's claim to wait on the lock")
        worker.proc.send_signal(signal.SIGTERM)
        await worker.wait_log("SIGTERM received")
        locker.rollback()  # the claim now finds nothing and returns

    assert await worker.wait_exit(10) == 0, worker.describe()


async def test_sigkill_mid_job_is_recovered_by_another_worker(
    client: Soniq, database_url: str, spawner: Spawner
) -> None:
    job_id = await client.enqueue("t.block", args={"key": "k"})
    first = spawner.start(database_url)
    await spawner.until(lambda: spawner.marked("started-k-1"), 15, "the job to start on A")

    first.proc.kill()
    assert await first.wait_exit(10) == -signal.SIGKILL
    assert await status_is(client, job_id, "processing")

    second = spawner.start(database_url)
    # Heartbeat timeout 3 s, a recovery pass every 1 s, then NOTIFY wakes B.
    await spawner.until(lambda: status_is(client, job_id, "done"), 20, "B to finish the job")
    assert (await job(client, job_id))["attempts"] == 2, spawner.describe()
    assert spawner.marked("done-k-2")
    await second.wait_log("recovered 1 stale worker(s): 1 job(s) requeued")
    assert second.alive(), second.describe()
    # The dead attempt is counted by the recovery, the second by B within seconds.
    await spawner.until(
        lambda: reported(client, failed=1, done=1), 20, "status() to count both attempts"
    )


async def test_job_that_kills_its_worker_ends_in_the_dead_letter_queue(
    client: Soniq, database_url: str, spawner: Spawner
) -> None:
    @client.job(name="t.suicide", retries=1)
    def suicide() -> None: ...  # the producer's declaration: same name, same retries

    job_id = await client.enqueue("t.suicide")
    assert (await job(client, job_id))["max_attempts"] == 2

    first = spawner.start(database_url)
    assert await first.wait_exit(15) == -signal.SIGKILL, first.describe()
    assert spawner.marked("suicide-1")

    # The second worker recovers the job from the first (3 s heartbeat timeout),
    # runs attempt 2 and dies the same way.
    second = spawner.start(database_url)
    assert await second.wait_exit(20) == -signal.SIGKILL, second.describe()
    assert spawner.marked("suicide-2")
    last_start = (await job(client, job_id))["started_at"]  # of attempt 2, orphaned

    third = spawner.start(database_url)
    await spawner.until(
        lambda: status_is(client, job_id, "dead_letter"), 20, "the job to be dead-lettered"
    )
    (dead,) = await client.dead_letter.list()
    assert (dead["id"], dead["attempts"]) == (job_id, 2)
    assert "worker died" in dead["reason"].lower(), dead
    assert dead["started_at"] == last_start is not None  # kept by stale-worker recovery
    assert not spawner.marked("suicide-3")
    assert await reported(client, failed=2, dead_letter=1)  # retried once, then buried

    normal = await client.enqueue("t.record", args={"key": "after"})
    await spawner.until(
        lambda: status_is(client, normal, "done"), 10, "the third worker to run a normal job"
    )
    assert third.alive(), third.describe()


async def test_notify_wakes_an_idle_worker_long_before_the_poll(
    client: Soniq, database_url: str, spawner: Spawner
) -> None:
    worker = spawner.start(database_url, SONIQ_POLL_INTERVAL="30")
    await worker.wait_log("LISTEN soniq_new_job", timeout=15)

    job_id = await client.enqueue("t.record", args={"key": "wake"})

    # A poll would come only after 30 s; just the NOTIFY can make this deadline.
    await spawner.until(lambda: status_is(client, job_id, "done"), 5, "the NOTIFY to wake it")
    assert worker.alive(), worker.describe()


async def test_postgres_restart_mid_run_loses_nothing(
    private_pg: PrivatePostgres, spawner: Spawner
) -> None:
    url = private_pg.url
    app = Soniq(database_url=url, enqueue_validation="none")
    try:
        await app.setup()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE seen (id text PRIMARY KEY)")
        ids = await app.enqueue_many("t.seen", [{"n": i} for i in range(300)])

        async def done_count() -> int:
            return len(await app.list_jobs(status="done", limit=len(ids)))

        async def some_done() -> bool:
            return await done_count() >= 20

        async def all_done() -> bool:
            return await done_count() == len(ids)

        worker = spawner.start(url, "--concurrency", "8")
        await spawner.until(some_done, 30, "the first jobs to finish")
        done_before = await done_count()
        await app.close()  # reopened on next use; the restart would only break its pool

        logged_before = len(worker.log())
        private_pg.stop()
        await spawner.until(
            lambda: "LISTEN soniq_new_job unavailable" in worker.log()[logged_before:],
            15,
            "the worker to notice the outage",
        )
        await anyio.sleep(OUTAGE_SECONDS)  # not synchronisation: the outage itself
        private_pg.start()
        assert done_before < len(ids), "the restart came after the last job; slow the jobs"

        await spawner.until(all_done, 60, "all 300 jobs to be done", interval=0.25)
        assert worker.alive(), worker.describe()
        with psycopg.connect(url, autocommit=True) as conn:
            seen = {row[0] for row in conn.execute("SELECT id FROM seen").fetchall()}
        assert seen == set(ids)
        assert await app.dead_letter.list() == [], worker.describe()
        # Counts the worker could not write during the outage were kept, not lost.
        await spawner.until(
            lambda: reported(app, done=len(ids)), 30, "status() to count every done job"
        )
    finally:
        await app.close()


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
async def test_jobs_module_import_error_fails_fast(
    tmp_path: Path, spawner: Spawner, debug: bool
) -> None:
    (tmp_path / "broken_jobs.py").write_text("import no_such_module_xyz\n")
    worker = spawner.start(
        "postgresql://nobody@127.0.0.1:1/nothing",  # never reached: the import fails first
        global_args=("--debug",) if debug else (),
        SONIQ_JOBS_MODULES="broken_jobs",
    )

    assert await worker.wait_exit(15) == 1, worker.describe()
    stderr = worker.log()
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "broken_jobs" in lines[-1] and "no_such_module_xyz" in lines[-1], stderr
    if debug:
        assert "Traceback (most recent call last)" in stderr, stderr
    else:
        assert len(lines) == 1, stderr
        assert "Traceback" not in stderr, stderr


async def test_a_second_sigterm_exits_at_once(
    client: Soniq, database_url: str, spawner: Spawner
) -> None:
    worker = spawner.start(database_url)
    await client.enqueue("t.block", args={"key": "stuck"})  # a 30 s sync job
    await spawner.until(lambda: spawner.marked("started-stuck-1"), 15, "the sync job to start")
    worker.proc.send_signal(signal.SIGTERM)
    await worker.wait_log("signal again to force exit")  # in its grace period
    worker.proc.send_signal(signal.SIGTERM)
    assert await worker.wait_exit(5) == 128 + signal.SIGTERM, worker.describe()
    assert not spawner.marked("done-stuck-1")


APP_MODULE = """
import os
from pathlib import Path

from soniq import Soniq

app = Soniq(database_url=os.environ["JOBS_DB"])  # configured in code, not by SONIQ_*


@app.job(name="{name}.job")
def handler() -> str:
    return "{name}"


@app.after_job
def after(job_name: str, job_id: str, duration_ms: float) -> None:
    (Path(os.environ["JOBS_MARK_DIR"]) / f"hook-{name}-saw-{{job_name}}").touch()
"""


async def test_jobs_modules_with_several_apps_share_one_worker(
    client: Soniq, database_url: str, spawner: Spawner
) -> None:
    for name in ("alpha", "beta"):
        (spawner.tmp_path / f"mod_{name}.py").write_text(APP_MODULE.format(name=name))
    alpha = await client.enqueue("alpha.job", args={})
    beta = await client.enqueue("beta.job", args={})
    worker = spawner.start(
        database_url,
        "--run-once",
        SONIQ_DATABASE_URL="",  # only the apps' own configuration says where to go
        SONIQ_JOBS_MODULES="mod_alpha,mod_beta",
        JOBS_DB=database_url,
    )
    assert await worker.wait_exit(30) == 0, worker.describe()
    assert (await job(client, alpha))["result"] == "alpha"
    assert (await job(client, beta))["result"] == "beta"
    # Every app's hooks run for every job, whichever app registered it.
    for hook in ("alpha", "beta"):
        for name in ("alpha.job", "beta.job"):
            assert spawner.marked(f"hook-{hook}-saw-{name}"), worker.describe()


async def test_sigterm_lets_a_running_async_job_finish_within_the_shutdown_timeout(
    client: Soniq, database_url: str, spawner: Spawner
) -> None:
    worker = spawner.start(database_url, SONIQ_SHUTDOWN_TIMEOUT="10")
    job_id = await client.enqueue("t.anap", args={"key": "short", "seconds": 2})
    await spawner.until(lambda: spawner.marked("started-short-1"), 15, "the job to start")

    worker.proc.send_signal(signal.SIGTERM)

    assert await worker.wait_exit(15) == 0, worker.describe()
    record = await job(client, job_id)
    assert (record["status"], record["attempts"], record["result"]) == ("done", 1, "short")
    assert "waiting up to 10s for 1 running job(s) to finish" in worker.log()
    assert worker_rows(database_url) == 0, worker.describe()


async def test_sigterm_requeues_an_async_job_that_outlasts_the_shutdown_timeout(
    client: Soniq, database_url: str, spawner: Spawner
) -> None:
    worker = spawner.start(database_url, SONIQ_SHUTDOWN_TIMEOUT="1")
    job_id = await client.enqueue("t.anap", args={"key": "long", "seconds": 60})
    await spawner.until(lambda: spawner.marked("started-long-1"), 15, "the job to start")

    worker.proc.send_signal(signal.SIGTERM)

    # One second of grace, then the job is interrupted and put back: far from 60 s.
    assert await worker.wait_exit(10) == 0, worker.describe()
    record = await job(client, job_id)
    assert (record["status"], record["attempts"]) == ("queued", 0), worker.describe()
    assert record["worker_id"] is None
    assert not spawner.marked("done-long-1")
    assert "waiting up to 1s for 1 running job(s)" in worker.log()


async def test_sighup_is_a_graceful_stop(
    client: Soniq, database_url: str, spawner: Spawner
) -> None:
    worker = spawner.start(database_url)  # the default grace: 30 s
    job_id = await client.enqueue("t.anap", args={"key": "hup", "seconds": 2})
    await spawner.until(lambda: spawner.marked("started-hup-1"), 15, "the job to start")

    worker.proc.send_signal(signal.SIGHUP)

    assert await worker.wait_exit(15) == 0, worker.describe()
    record = await job(client, job_id)
    assert (record["status"], record["attempts"], record["result"]) == ("done", 1, "hup")
    assert "SIGHUP received" in worker.log()
    assert "Traceback" not in worker.log(), worker.describe()
    assert worker_rows(database_url) == 0, worker.describe()


async def test_soniq_queues_does_not_narrow_the_worker(
    client: Soniq, database_url: str, spawner: Spawner
) -> None:
    ids = [
        await client.enqueue("t.record", args={"key": "in-default"}),
        await client.enqueue("t.record", args={"key": "in-other"}, queue="other"),
    ]
    # As in the original Soniq, SONIQ_QUEUES is read but inert: only --queues narrows.
    worker = spawner.start(database_url, "--run-once", SONIQ_QUEUES="elsewhere")
    assert await worker.wait_exit(30) == 0, worker.describe()
    assert [(await job(client, i))["status"] for i in ids] == ["done", "done"]
