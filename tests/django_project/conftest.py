"""The Django test project, run in a process of its own (see tests/acceptance/test_django_suite.py).

These tests need Django configured from one of the settings modules here, so they are
collected only when $DJANGO_SETTINGS_MODULE names one; the rest of the suite never
configures Django. To run them directly, give them a database with Soniq's tables::

    SONIQ_DJANGO_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1/mydb \\
    DJANGO_SETTINGS_MODULE=tests.django_project.settings python -m pytest tests/django_project
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_PREFIX = "tests.django_project.settings"

if not os.environ.get("DJANGO_SETTINGS_MODULE", "").startswith(SETTINGS_PREFIX):
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="session")
def django_db_setup(django_db_blocker: Any) -> None:
    """Use the database from the settings as it is (it has Soniq's tables); add ours."""
    from django.core.management import call_command

    with django_db_blocker.unblock():
        call_command("migrate", run_syncdb=True, verbosity=0)


@pytest.fixture(scope="session")
def test_database_url() -> str:
    """A libpq URL of the test database, for looking at it from outside Django."""
    from soniq_sync.django.conf import database_url_for

    return database_url_for("default")


class Outside:
    """Reads the database on a connection of its own: sees only committed rows."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True)

    def job(self, job_id: str) -> tuple[Any, ...] | None:
        """(job_name, args, queue, priority, scheduled_at, max_attempts) or None."""
        return self.conn.execute(
            "SELECT job_name, args, queue, priority, scheduled_at, max_attempts "
            "FROM soniq_jobs WHERE id = %s",
            (job_id,),
        ).fetchone()

    def jobs_with(self, **args: Any) -> int:
        """How many jobs have exactly these args."""
        import json

        row = self.conn.execute(
            "SELECT count(*) FROM soniq_jobs WHERE args = %s::jsonb", (json.dumps(args),)
        ).fetchone()
        assert row is not None
        return int(row[0])

    def order_exists(self, ref: str) -> bool:
        row = self.conn.execute("SELECT 1 FROM testapp_order WHERE ref = %s", (ref,)).fetchone()
        return row is not None


@pytest.fixture
def outside(test_database_url: str, transactional_db: None) -> Iterator[Outside]:
    """An :class:`Outside` reader (and a transactional test, so commits are real)."""
    reader = Outside(test_database_url)
    try:
        yield reader
    finally:
        reader.conn.close()


class Worker:
    """``soniq worker`` for this Django project, as a subprocess."""

    def __init__(self, tmp: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SONIQ_")}
        env.update(
            DJANGO_SETTINGS_MODULE=os.environ["DJANGO_SETTINGS_MODULE"],
            SONIQ_DJANGO_TEST_DATABASE_URL=os.environ.get("SONIQ_DJANGO_TEST_DATABASE_URL", ""),
            SONIQ_JOBS_MODULES="soniq_sync.django.worker",
            SONIQ_POLL_INTERVAL="0.5",
            SONIQ_HEARTBEAT_INTERVAL="0.5",
            SONIQ_HEARTBEAT_TIMEOUT="5",
            SONIQ_LOG_LEVEL="INFO",
        )
        self.log_path = tmp / "worker.stderr"
        with self.log_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "soniq", "worker", "--queues", "default,other"],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    def describe(self) -> str:
        status = "running" if self.proc.poll() is None else f"exited with {self.proc.returncode}"
        return f"worker {status}; stderr:\n{self.log_path.read_text(errors='replace')}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=15)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """One worker for a test module, stopped afterwards."""
    running = Worker(tmp_path_factory.mktemp("worker"))
    try:
        yield running
    finally:
        running.stop()
