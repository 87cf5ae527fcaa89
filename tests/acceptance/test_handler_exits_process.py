"""A handler that raises SystemExit, KeyboardInterrupt, GeneratorExit or its own
CancelledError fails its job; it never stops the `soniq worker` that runs it.

Each test runs ``python -m soniq worker`` on a jobs module written into tmp_path. The
bad jobs run beside two "gate" jobs (one async, one sync) that stay in flight until the
test opens the gate, so the tests see that the other jobs of the worker carry on too.
Real signals to the same worker still mean a graceful shutdown.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from soniq import Soniq
from tests.acceptance.processes import SoniqProcess, start_soniq, until

JOBS_MODULE = '''
import asyncio
import os
import sys
import time
from pathlib import Path

from soniq import JobContext, Soniq

app = Soniq()
MARKS = Path(os.environ["JOBS_MARK_DIR"])


def mark(name: str) -> None:
    (MARKS / name).touch()


def escape(how: str) -> None:
    if how == "sys.exit(3)":
        sys.exit(3)
    if how == "exit()":
        exit()
    if how == "KeyboardInterrupt":
        raise KeyboardInterrupt("from the handler")
    if how == "GeneratorExit":
        raise GeneratorExit("from the handler")
    if how == "CancelledError":
        raise asyncio.CancelledError("from the handler")
    raise AssertionError(how)


@app.job(name="t.escape")
def escape_sync(ctx: JobContext, how: str) -> None:
    mark(f"ran-{ctx.job_id}-{ctx.attempt}")
    time.sleep(0.2)  # the worker is waiting on this thread when the exception comes
    escape(how)


@app.job(name="t.aescape")
async def escape_async(ctx: JobContext, how: str) -> None:
    mark(f"ran-{ctx.job_id}-{ctx.attempt}")
    await asyncio.sleep(0)
    escape(how)


@app.job(name="t.gate")
async def gate(ctx: JobContext) -> str:
    """In flight until the test creates the file "open"."""
    mark(f"started-{ctx.job_id}")
    while not (MARKS / "open").exists():
        await asyncio.sleep(0.02)
    return "through"


@app.job(name="t.sgate")
def sync_gate(ctx: JobContext) -> str:
    """The sync twin of t.gate, in a worker thread."""
    mark(f"started-{ctx.job_id}")
    while not (MARKS / "open").exists():
        time.sleep(0.02)
    return "through"


@app.job(name="t.ablock")
async def ablock(ctx: JobContext) -> None:
    mark(f"started-{ctx.job_id}")
    await asyncio.sleep(30)
    mark(f"done-{ctx.job_id}")


@app.job(name="t.record")
def record(key: str) -> str:
    return key


@app.job(name="t.hooked")
def hooked(ctx: JobContext) -> str:
    """Fails once, then succeeds; its hooks all escape (below)."""
    if ctx.attempt == 1:
        raise ValueError("first attempt")
    return "ran"


@app.before_job
def before(job_name: str, job_id: str, attempt: int) -> None:
    if job_name == "t.hooked":
        sys.exit(4)


@app.on_error
def on_error(job_name: str, job_id: str, error: str, attempt: int) -> None:
    mark(f"on-error-{job_id}-{attempt}")
    if job_name == "t.hooked":
        raise GeneratorExit


@app.after_job
async def after(job_name: str, job_id: str, duration_ms: float) -> None:
    if job_name == "t.hooked":
        raise KeyboardInterrupt
'''

ENV = {
    "SONIQ_HEARTBEAT_INTERVAL": "0.5",
    "SONIQ_HEARTBEAT_TIMEOUT": "3",
    "SONIQ_CLEANUP_INTERVAL": "1",
    "SONIQ_POLL_INTERVAL": "0.5",
    "SONIQ_ERROR_RETRY_DELAY": "0.5",
    "SONIQ_LOG_LEVEL": "INFO",
    "SONIQ_JOBS_MODULES": "jobs_mod",
    # A stop requeues running async jobs at once (no SONIQ_SHUTDOWN_TIMEOUT grace).
    "SONIQ_SHUTDOWN_TIMEOUT": "0",
}

#: How each handler gets out, and how its job's error must begin.
ESCAPES = {
    "sys.exit(3)": "SystemExit: 3",
    "exit()": "SystemExit: None",
    "KeyboardInterrupt": "KeyboardInterrupt: from the handler",
    "GeneratorExit": "GeneratorExit: from the handler",
    "CancelledError": "CancelledError: from the handler",
}


class Run:
    """The jobs module in ``tmp_path``, its marks and the workers started on it."""

    def __init__(self, tmp_path: Path, database_url: str) -> None:
        self.tmp_path = tmp_path
        self.database_url = database_url
        self.marks = tmp_path / "marks"
        self.marks.mkdir()
        (tmp_path / "jobs_mod.py").write_text(JOBS_MODULE)
        self.workers: list[SoniqProcess] = []

    def start(self) -> SoniqProcess:
        env = {**ENV, "SONIQ_DATABASE_URL": self.database_url, "JOBS_MARK_DIR": str(self.marks)}
        worker = start_soniq(
            self.tmp_path, f"worker{len(self.workers) + 1}", ["worker", "--concurrency", "4"], env
        )
        self.workers.append(worker)
        return worker

    def marked(self, name: str) -> bool:
        return (self.marks / name).exists()

    async def until(self, predicate: Any, timeout: float, what: str) -> None:
        await until(predicate, timeout, what, self.workers)

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()


@pytest.fixture
def run(tmp_path: Path, database_url: str) -> Iterator[Run]:
    started = Run(tmp_path, database_url)
    try:
        yield started
    finally:
        started.close()


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[Soniq]:
    """A producer that enqueues by name; its jobs get two attempts (max_retries=1)."""
    app = Soniq(database_url=database_url, enqueue_validation="none", max_retries=1)
    try:
        yield app
    finally:
        await app.close()


async def record(app: Soniq, job_id: str) -> dict[str, Any]:
    found = await app.get_job(job_id)
    assert found is not None, f"job {job_id} vanished"
    return found


async def has_status(app: Soniq, job_id: str, status: str) -> bool:
    return bool((await record(app, job_id))["status"] == status)


async def dead_lettered_by_the_worker(
    client: Soniq, run: Run, worker: SoniqProcess, how: str
) -> list[str]:
    """Enqueue a sync and an async job escaping by ``how``; wait until both are
    dead-lettered after their two attempts, with the worker still up."""
    bad = [await client.enqueue(name, args={"how": how}) for name in ("t.escape", "t.aescape")]

    async def both_dead_or_worker_gone() -> bool:
        if not worker.alive():
            return True
        return all([await has_status(client, job_id, "dead_letter") for job_id in bad])

    await run.until(both_dead_or_worker_gone, 30, f"the jobs raising {how} to be dead-lettered")
    assert worker.alive(), worker.describe()
    return bad


@pytest.mark.parametrize("how", list(ESCAPES))
async def test_a_handler_escaping_fails_its_job_and_the_worker_runs_on(
    client: Soniq, run: Run, how: str
) -> None:
    worker = run.start()
    gates = [await client.enqueue(name) for name in ("t.gate", "t.sgate")]
    await run.until(
        lambda: all(run.marked(f"started-{g}") for g in gates), 20, "the gate jobs to start"
    )

    bad = await dead_lettered_by_the_worker(client, run, worker, how)

    for job_id in bad:
        dead = await record(client, job_id)
        assert dead["attempts"] == 2, (dead, worker.describe())
        assert dead["reason"] == "Failed all 2 attempts.", dead
        assert dead["last_error"] == ESCAPES[how], dead
        # Retried once, and the on_error hooks ran for both attempts.
        for attempt in (1, 2):
            assert run.marked(f"ran-{job_id}-{attempt}"), worker.describe()
            assert run.marked(f"on-error-{job_id}-{attempt}"), worker.describe()

    # The jobs in flight beside them were never interrupted, and new ones still run.
    for gate in gates:
        assert (await record(client, gate))["status"] == "processing"
    (run.marks / "open").touch()

    async def gates_done() -> bool:
        return all([await has_status(client, gate, "done") for gate in gates])

    await run.until(gates_done, 10, "the gates to finish")
    for gate in gates:
        finished = await record(client, gate)
        assert (finished["attempts"], finished["result"]) == (1, "through"), finished
    later = await client.enqueue("t.record", args={"key": "later"})
    await run.until(lambda: has_status(client, later, "done"), 10, "a job after them to run")
    assert worker.alive(), worker.describe()
    assert "job task crashed" not in worker.log(), worker.describe()


async def test_a_hook_escaping_is_logged_and_its_job_runs_on(client: Soniq, run: Run) -> None:
    worker = run.start()
    job_id = await client.enqueue("t.hooked")

    async def finished_or_worker_gone() -> bool:
        return not worker.alive() or await has_status(client, job_id, "done")

    await run.until(finished_or_worker_gone, 20, "the job to finish")

    finished = await record(client, job_id)
    assert (finished["status"], finished["attempts"]) == ("done", 2), worker.describe()
    assert finished["result"] == "ran"
    assert run.marked(f"on-error-{job_id}-1")
    for hook in ("before_job", "on_error", "after_job"):
        assert f"Hook {hook} failed" in worker.log(), worker.describe()
    assert worker.alive(), worker.describe()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_a_real_signal_still_shuts_down_a_worker_whose_jobs_escaped(
    client: Soniq, run: Run, sig: signal.Signals
) -> None:
    worker = run.start()
    for how in ("KeyboardInterrupt", "sys.exit(3)"):
        await dead_lettered_by_the_worker(client, run, worker, how)
    running = await client.enqueue("t.ablock")
    await run.until(lambda: run.marked(f"started-{running}"), 10, "the async job to start")

    worker.proc.send_signal(sig)

    assert await worker.wait_exit(10) == 0, worker.describe()
    assert f"{sig.name} received" in worker.log()
    requeued = await record(client, running)
    assert (requeued["status"], requeued["attempts"]) == ("queued", 0), worker.describe()
    assert not run.marked(f"done-{running}")
