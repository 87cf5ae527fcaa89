"""`soniq jobs` and `soniq dead-letter` as real processes, next to a real `soniq worker`.

The commands run as ``python -m soniq ...`` subprocesses with only ``SONIQ_*`` settings
from the test; job state is read back through the public API.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import soniq_sync
from tests.acceptance.processes import SoniqProcess, start_soniq, until
from tests.integration.test_dead_letter import bury

JOBS_MODULE = """
import asyncio
import os
from pathlib import Path

from soniq import Soniq

app = Soniq()
MARKS = Path(os.environ["JOBS_MARK_DIR"])


@app.job(name="ops.long")
async def long(key: str) -> str:
    if (MARKS / f"interrupted-{key}").exists():
        return "second time lucky"
    (MARKS / f"started-{key}").touch()
    try:
        await asyncio.sleep(120)
    except asyncio.CancelledError:
        (MARKS / f"interrupted-{key}").touch()
        raise
    return "slept"
"""


def env_for(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SONIQ_")}
    env["SONIQ_DATABASE_URL"] = database_url
    env.update(extra)
    return env


def soniq(
    args: Sequence[str], database_url: str, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run one ``python -m soniq`` command to completion (60 s at most)."""
    return subprocess.run(
        [sys.executable, "-m", "soniq", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env_for(database_url),
        cwd=cwd,
        timeout=60,
        check=False,
    )


@pytest.fixture
def worker(tmp_path: Path, database_url: str) -> Iterator[SoniqProcess]:
    (tmp_path / "ops_jobs.py").write_text(JOBS_MODULE)
    (tmp_path / "marks").mkdir()
    env = env_for(
        database_url,
        SONIQ_JOBS_MODULES="ops_jobs",
        JOBS_MARK_DIR=str(tmp_path / "marks"),
        SONIQ_HEARTBEAT_INTERVAL="60",  # the NOTIFY must bring the cancel, not the poll
    )
    started = start_soniq(tmp_path, "worker", ["worker", "--concurrency", "2"], env)
    try:
        yield started
    finally:
        started.kill()


@pytest.fixture
def app(database_url: str) -> Iterator[soniq_sync.Soniq]:
    with soniq_sync.Soniq(database_url=database_url, enqueue_validation="none") as app:
        yield app


async def test_cancel_list_and_retry_a_running_job_from_the_command_line(
    worker: SoniqProcess, app: soniq_sync.Soniq, database_url: str, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    job_id = app.enqueue("ops.long", args={"key": "a"})
    await until(lambda: (marks / "started-a").exists(), 30, "the job to start", [worker])

    done = soniq(["jobs", "cancel", job_id], database_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Asked the worker running job {job_id} to stop it.")
    await until(
        lambda: app.get_job(job_id)["status"] == "cancelled",  # type: ignore[index]
        15,
        "the job to end cancelled",
        [worker],
    )
    assert (marks / "interrupted-a").exists()

    listed = soniq(["jobs", "list", "--json", "--status", "cancelled"], database_url)
    assert listed.returncode == 0, listed.stderr
    assert [j["id"] for j in json.loads(listed.stdout)] == [job_id]
    shown = soniq(["jobs", "show", job_id], database_url)
    assert "status               cancelled" in shown.stdout

    retried = soniq(["jobs", "retry", job_id], database_url)
    assert (retried.returncode, retried.stdout) == (0, f"Job {job_id} is queued and due now.\n")
    await until(lambda: app.get_result(job_id) == "second time lucky", 15, "the rerun", [worker])

    refused = soniq(["jobs", "cancel", job_id], database_url)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.startswith("soniq: error: SONIQ_JOB_NOT_CANCELLABLE: ")
    assert len(refused.stderr.splitlines()) == 1
    assert "Traceback" not in refused.stderr
    debug = soniq(["--debug", "jobs", "retry", job_id], database_url)
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    assert "SONIQ_JOB_NOT_RETRYABLE" in debug.stderr
    assert worker.alive()


def test_export_purge_import_through_a_pipe(app: soniq_sync.Soniq, database_url: str) -> None:
    bury(database_url, 3, job_name="pipe.one")
    bury(database_url, 2, job_name="pipe.two", queue="mail")
    before = app.dead_letter.list()

    exported = soniq(["dead-letter", "export"], database_url)
    assert exported.returncode == 0, exported.stderr
    assert len(exported.stdout.splitlines()) == 5
    assert exported.stderr == "Exported 5 dead letter(s) to standard output.\n"

    purged = soniq(["dead-letter", "purge", "--all"], database_url)  # no terminal: no question
    assert (purged.returncode, purged.stdout) == (0, "Deleted 5 dead letter(s).\n")
    imported = soniq(["dead-letter", "import", "-"], database_url, stdin=exported.stdout)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout == "Imported 5 dead letter(s); skipped 0 already present.\n"
    assert app.dead_letter.list() == before

    replayed = soniq(["dead-letter", "replay", "--queue", "mail", "--json"], database_url)
    assert json.loads(replayed.stdout)["replayed"] == 2
    listed = soniq(["dead-letter", "list", "--name", "pipe.two"], database_url)
    assert [line.split()[6] for line in listed.stdout.splitlines()[1:]] == ["1", "1"]  # REPLAYS

    bad = soniq(["dead-letter", "import", "-"], database_url, stdin='{"id": 1}\n')
    assert bad.returncode == 1
    assert bad.stderr.startswith("soniq: error: SONIQ_INVALID_EXPORT: Line 1 ")


def test_purge_asks_on_a_terminal(app: soniq_sync.Soniq, database_url: str) -> None:
    bury(database_url, 4, job_name="tty.job")
    answer_no = _on_a_terminal(["dead-letter", "purge", "--name", "tty.job"], database_url, "n")
    assert answer_no["returncode"] == 1
    assert "Delete 4 dead letter(s) for good? [y/N]" in answer_no["terminal"]
    assert app.dead_letter.count() == 4
    answer_yes = _on_a_terminal(["dead-letter", "purge", "--name", "tty.job"], database_url, "y")
    assert answer_yes["returncode"] == 0
    assert answer_yes["stdout"] == "Deleted 4 dead letter(s).\n"
    assert app.dead_letter.count() == 0


def _on_a_terminal(args: Sequence[str], database_url: str, answer: str) -> dict[str, Any]:
    """Run a command with a pseudo-terminal as stdin and stderr; answer its question."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "soniq", *args],
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=terminal,
        env=env_for(database_url),
        text=True,
    )
    os.close(terminal)
    seen = b""
    deadline = time.monotonic() + 30
    try:
        while b"[y/N]" not in seen:
            assert time.monotonic() < deadline, f"no question on the terminal: {seen!r}"
            ready, _, _ = select.select([controller], [], [], 0.1)
            if ready:
                seen += os.read(controller, 1024)
        os.write(controller, f"{answer}\n".encode())
        stdout, _ = proc.communicate(timeout=30)
        with_rest = seen
        while select.select([controller], [], [], 0)[0]:
            try:
                chunk = os.read(controller, 1024)
            except OSError:  # the other end is closed
                break
            if not chunk:
                break
            with_rest += chunk
    finally:
        proc.kill()
        proc.wait(timeout=10)
        os.close(controller)
    return {
        "returncode": proc.returncode,
        "stdout": stdout,
        "terminal": with_rest.decode(errors="replace"),
    }


@pytest.mark.parametrize("on_a_terminal", [True, False])
def test_a_long_replay_shows_progress_only_on_a_terminal(
    app: soniq_sync.Soniq, database_url: str, on_a_terminal: bool
) -> None:
    bury(database_url, 1200, job_name="bar.job")
    args = [sys.executable, "-m", "soniq", "dead-letter", "replay", "--all"]
    if not on_a_terminal:
        done = subprocess.run(
            args, capture_output=True, text=True, env=env_for(database_url), timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""  # a pipe or a log file gets no bar
    else:
        controller, terminal = pty.openpty()
        proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=terminal, env=env_for(database_url)
        )
        os.close(terminal)
        seen = b""
        try:
            deadline = time.monotonic() + 60
            while proc.poll() is None or select.select([controller], [], [], 0)[0]:
                assert time.monotonic() < deadline, seen
                if select.select([controller], [], [], 0.1)[0]:
                    try:
                        chunk = os.read(controller, 4096)
                    except OSError:  # the process closed the terminal
                        break
                    if not chunk:
                        break
                    seen += chunk
        finally:
            proc.wait(timeout=30)
            os.close(controller)
        assert proc.returncode == 0
        assert b"Replaying" in seen and b"100%" in seen, seen
    assert app.dead_letter.count() == 1200
    assert len(app.list_jobs(job_name="bar.job", limit=2000)) == 1200
