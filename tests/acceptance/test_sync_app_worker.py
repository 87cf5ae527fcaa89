"""Jobs registered on a blocking ``soniq_sync.Soniq`` run under ``soniq worker``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import soniq_sync

JOBS = textwrap.dedent(
    """
    import soniq_sync
    from soniq import JobContext

    app = soniq_sync.Soniq()

    @app.job(name="sync.double", queue="math")
    def double(x: int, ctx: JobContext) -> dict:
        return {"value": 2 * x, "attempt": ctx.attempt}

    @soniq_sync.job(name="sync.default_app")
    async def on_default_app(word: str) -> str:
        return word.upper()
    """
)


def test_worker_runs_jobs_of_blocking_apps(tmp_path: Path, database_url: str) -> None:
    (tmp_path / "sync_jobs.py").write_text(JOBS)
    with soniq_sync.Soniq(database_url=database_url, enqueue_validation="none") as producer:
        doubled = producer.enqueue("sync.double", args={"x": 21})
        shouted = producer.enqueue("sync.default_app", args={"word": "hi"})
        env = {k: v for k, v in os.environ.items() if not k.startswith("SONIQ_")}
        env.update(SONIQ_DATABASE_URL=database_url, SONIQ_JOBS_MODULES="sync_jobs")
        done = subprocess.run(
            [sys.executable, "-m", "soniq", "worker", "--run-once"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert producer.get_result(doubled) == {"value": 42, "attempt": 1}, done.stderr
        assert producer.get_result(shouted) == "HI", done.stderr
        job = producer.get_job(doubled)
        assert job is not None and job["attempts"] == 1
