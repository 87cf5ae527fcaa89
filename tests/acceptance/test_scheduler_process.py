"""`soniq scheduler` as real processes: one leader, takeover after kill -9, live changes.

Each test writes a jobs module with ``@app.periodic`` declarations into its tmp_path
and runs ``python -m soniq scheduler`` there. No worker runs: the tests read the job
rows the schedulers write. Every wait has a deadline; a timed-out wait shows each
scheduler's exit status and stderr.
"""

from __future__ import annotations

import itertools
import signal
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from soniq import Soniq
from tests.acceptance.processes import SoniqProcess, start_soniq, until

JOBS_MODULE = """
from soniq import Soniq

app = Soniq()


@app.periodic(every=1, name="t.tick")
def tick() -> None: ...


@app.periodic(every=1, name="t.marker")
def marker() -> None: ...
"""

TIMINGS = {"SONIQ_SCHEDULER_POLL_INTERVAL": "0.2", "SONIQ_LOG_LEVEL": "INFO"}
DEADLINE = 30.0


class Schedulers:
    """Starts ``soniq scheduler`` processes in ``tmp_path``; kills the rest at teardown."""

    def __init__(self, tmp_path: Path, database_url: str) -> None:
        self.tmp_path = tmp_path
        self.database_url = database_url
        (tmp_path / "sched_jobs.py").write_text(JOBS_MODULE)
        self.procs: list[SoniqProcess] = []

    def start(self, *args: str) -> SoniqProcess:
        env = {
            **TIMINGS,
            "SONIQ_DATABASE_URL": self.database_url,
            "SONIQ_JOBS_MODULES": "sched_jobs",
        }
        name = f"scheduler{len(self.procs) + 1}"
        started = start_soniq(self.tmp_path, name, ["scheduler", *args], env)
        self.procs.append(started)
        return started

    async def until(self, predicate: object, what: str) -> None:
        await until(predicate, DEADLINE, what, self.procs)  # type: ignore[arg-type]

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()


@pytest.fixture
def schedulers(tmp_path: Path, database_url: str) -> Iterator[Schedulers]:
    started = Schedulers(tmp_path, database_url)
    try:
        yield started
    finally:
        started.close()


def run_times(database_url: str, job_name: str = "t.tick") -> list[object]:
    """The scheduled_at of every job of ``job_name``, in order."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT scheduled_at FROM soniq_jobs WHERE job_name = %s ORDER BY scheduled_at",
            (job_name,),
        ).fetchall()
    return [row[0] for row in rows]


def assert_one_job_per_tick(times: list[object]) -> None:
    """No run twice, none left out: consecutive runs exactly one second apart."""
    assert len(set(times)) == len(times), f"duplicate runs: {times}"
    gaps = {b - a for a, b in itertools.pairwise(times)}  # type: ignore[operator]
    assert gaps <= {timedelta(seconds=1)}, f"runs not one second apart: {times}"


def leaders(procs: list[SoniqProcess]) -> list[SoniqProcess]:
    return [p for p in procs if "leading:" in p.log()]


async def test_two_schedulers_write_one_job_per_tick(
    schedulers: Schedulers, database_url: str
) -> None:
    first, second = schedulers.start(), schedulers.start()
    await schedulers.until(lambda: len(run_times(database_url)) >= 6, "six runs of t.tick")
    assert_one_job_per_tick(run_times(database_url))
    assert_one_job_per_tick(run_times(database_url, "t.marker"))
    assert len(leaders([first, second])) == 1
    for proc in (first, second):
        proc.proc.send_signal(signal.SIGTERM)
    for proc in (first, second):
        assert await proc.wait_exit(DEADLINE) == 0, proc.describe()
        assert "scheduler stopped" in proc.log()


async def test_a_killed_leader_is_replaced_and_the_series_continues(
    schedulers: Schedulers, database_url: str
) -> None:
    procs = [schedulers.start(), schedulers.start()]
    await schedulers.until(lambda: len(run_times(database_url)) >= 3, "three runs")
    await schedulers.until(lambda: leaders(procs), "a leader")
    (leader,) = leaders(procs)
    (follower,) = [p for p in procs if p is not leader]
    leader.proc.send_signal(signal.SIGKILL)
    assert await leader.wait_exit(DEADLINE) == -signal.SIGKILL
    before = len(run_times(database_url))
    await follower.wait_log("leading:", DEADLINE)
    await schedulers.until(
        lambda: len(run_times(database_url)) >= before + 4, "four more runs after the kill"
    )
    assert_one_job_per_tick(run_times(database_url))
    assert_one_job_per_tick(run_times(database_url, "t.marker"))


async def test_pause_resume_and_remove_take_effect_while_running(
    schedulers: Schedulers, client: Soniq, database_url: str
) -> None:
    schedulers.start()
    await schedulers.until(lambda: len(run_times(database_url)) >= 2, "two runs")

    async def markers_grow_by(n: int) -> None:
        # t.marker keeps firing, which shows the scheduler kept ticking meanwhile.
        target = len(run_times(database_url, "t.marker")) + n
        await schedulers.until(
            lambda: len(run_times(database_url, "t.marker")) >= target, f"{n} more markers"
        )

    await client.scheduler.pause("t.tick")
    paused_at = len(run_times(database_url))
    await markers_grow_by(3)
    assert len(run_times(database_url)) == paused_at

    await client.scheduler.resume("t.tick")
    await schedulers.until(lambda: len(run_times(database_url)) >= paused_at + 2, "runs again")

    assert await client.scheduler.remove("t.tick") is True
    removed_at = len(run_times(database_url))
    await markers_grow_by(3)
    assert len(run_times(database_url)) == removed_at
    assert await client.scheduler.get("t.tick") is None


async def test_list_shows_each_schedule_state_and_next_run(
    schedulers: Schedulers, client: Soniq, database_url: str
) -> None:
    await client.scheduler.add(name="t.remote", cron="0 9 * * 1", timezone="Europe/Berlin")
    await client.scheduler.pause("t.remote")
    listing = schedulers.start("--list")
    assert await listing.wait_exit(DEADLINE) == 0, listing.describe()
    out = (schedulers.tmp_path / "scheduler1.stdout").read_text()
    lines = out.splitlines()
    assert lines[0].startswith("NAME") and "NEXT RUN (UTC)" in lines[0]
    (row,) = [line for line in lines if line.startswith("t.remote")]
    assert "cron 0 9 * * 1 (Europe/Berlin)" in row and "paused" in row
