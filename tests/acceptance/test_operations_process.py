"""The operator commands and the retention sweep as real processes.

``soniq worker`` prunes with a short retention while ``soniq status`` and ``soniq
workers`` watch it; ``soniq tasks check``, ``soniq migrate status`` and ``soniq prune``
run the way a deploy script or cron would, and are judged by exit status and output.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from soniq import Soniq
from soniq.storage.queries import migration_files
from tests.acceptance.processes import SoniqProcess, start_soniq, until

JOBS_MODULE = """
from soniq import Soniq

app = Soniq()


@app.job(name="ops.echo")
async def echo(n: int) -> int:
    return n
"""

QUICK = {
    "SONIQ_HEARTBEAT_INTERVAL": "0.5",
    "SONIQ_HEARTBEAT_TIMEOUT": "3",
    "SONIQ_POLL_INTERVAL": "1",
    "SONIQ_LOG_LEVEL": "DEBUG",
}


class Commands:
    """Runs ``python -m soniq ...`` in ``tmp_path`` (where ops_jobs.py lives)."""

    def __init__(self, tmp_path: Path, database_url: str) -> None:
        self.tmp_path = tmp_path
        self.database_url = database_url
        self.started: list[SoniqProcess] = []
        (tmp_path / "ops_jobs.py").write_text(JOBS_MODULE)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **QUICK,
            "SONIQ_DATABASE_URL": self.database_url,
            "SONIQ_JOBS_MODULES": "ops_jobs",
            **extra,
        }

    def start(self, *command: str, **env: str) -> SoniqProcess:
        name = f"{command[0]}{len(self.started) + 1}"
        proc = start_soniq(self.tmp_path, name, command, self.env(**env))
        self.started.append(proc)
        return proc

    async def run(self, *command: str, **env: str) -> tuple[int, str, str]:
        """Run a one-shot command to the end: exit status, stdout, stderr."""
        proc = self.start(*command, **env)
        code = await proc.wait_exit(60)
        stdout = (self.tmp_path / f"{proc.name}.stdout").read_text()
        return code, stdout, proc.log()

    def close(self) -> None:
        for proc in self.started:
            proc.kill()


@pytest.fixture
def commands(tmp_path: Path, database_url: str) -> Iterator[Commands]:
    runner = Commands(tmp_path, database_url)
    try:
        yield runner
    finally:
        runner.close()


def jobs_left(url: str, ids: list[str]) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM soniq_jobs WHERE id = ANY(%s::uuid[])", (ids,)
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_a_worker_prunes_while_status_and_workers_watch(
    client: Soniq, database_url: str, commands: Commands
) -> None:
    worker = commands.start(
        "worker",
        "--concurrency",
        "4",
        SONIQ_FINISHED_JOB_RETENTION="0",
        SONIQ_RESULT_TTL="0",
        SONIQ_PRUNE_INTERVAL="0.2",
    )
    await worker.wait_log("started")
    ids = [await client.enqueue("ops.echo", args={"n": i}) for i in range(30)]
    later = await client.schedule("ops.echo", 3600, args={"n": -1})
    # Run, then deleted by the sweep: nothing of them is left in soniq_jobs.
    await until(lambda: jobs_left(database_url, ids) == 0, 30, "jobs run and pruned", [worker])
    assert jobs_left(database_url, [later]) == 1  # queued for later: never pruned
    assert "soniq.retention" in worker.log()

    code, out, err = await commands.run("workers", "--json")
    assert code == 0, err
    rows: list[dict[str, Any]] = json.loads(out)
    assert [(r["pid"], r["stale"], r["jobs_in_flight"]) for r in rows] == [
        (worker.proc.pid, False, 0)
    ]

    # The pruned jobs are still counted as done: the running worker reports what it
    # finished every few seconds, whatever retention deletes.
    async def status() -> dict[str, Any]:
        code, out, err = await commands.run("status", "--json")
        assert code == 0, err
        report: dict[str, Any] = json.loads(out)
        return report

    async def all_done_reported() -> bool:
        return bool((await status())["queues"][0]["done"] == 30)

    await until(all_done_reported, 30, "the worker to report 30 done jobs", [worker])
    report = await status()
    assert report["workers"] == 1
    [queue] = report["queues"]
    assert (queue["queue"], queue["scheduled"], queue["runnable"]) == ("default", 1, 0)
    assert (queue["done_last_minute"], queue["failed"]) == (30, 0)

    code, out, err = await commands.run("status")
    assert code == 0, err
    assert out.splitlines()[-1] == "Workers: 1 live."

    worker.proc.send_signal(signal.SIGTERM)
    assert await worker.wait_exit(30) == 0, worker.describe()


async def test_tasks_check_exit_status(client: Soniq, commands: Commands) -> None:
    await client.enqueue("ops.echo", args={"n": 1})
    code, out, err = await commands.run("tasks", "check")
    assert (code, out) == (0, "Every task name in use is registered (1 registered).\n"), err

    await client.enqueue("ops.retired", args={})
    code, out, err = await commands.run("tasks", "check", "--json")
    assert code == 1, err
    assert json.loads(out)["unregistered"] == [
        {"job_name": "ops.retired", "queued": 1, "processing": 0, "dead_letter": 0}
    ]


async def test_migrate_status_gates_a_deploy(empty_database_url: str, commands: Commands) -> None:
    shipped = [version for version, _ in migration_files()]
    env = {"SONIQ_DATABASE_URL": empty_database_url}
    code, out, err = await commands.run("migrate", "status", "--json", **env)
    assert code == 1, err
    assert json.loads(out)["pending"] == shipped

    code, _, err = await commands.run("setup", **env)
    assert code == 0, err
    code, out, err = await commands.run("migrate", "status", **env)
    assert code == 0, err
    assert out.splitlines()[-1] == "Schema is up to date."


async def test_prune_from_the_command_line(
    client: Soniq, database_url: str, commands: Commands
) -> None:
    ids = [await client.enqueue("ops.echo", args={"n": i}) for i in range(5)]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE soniq_jobs SET status = 'done', finished_at = now() - interval '3 hours' "
            "WHERE id = ANY(%s::uuid[])",
            (ids[:3],),
        )
    code, out, err = await commands.run("prune", "--older-than", "2h", "--json")
    assert code == 0, err
    assert json.loads(out) == {"deleted": 3, "older_than_seconds": 7200.0}
    assert jobs_left(database_url, ids) == 2

    code, out, err = await commands.run("prune", "--older-than", "yesterday")
    assert (code, out) == (1, "")
    assert err.startswith("soniq: error: SONIQ_INVALID_DURATION:")
