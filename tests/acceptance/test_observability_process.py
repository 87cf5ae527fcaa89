"""`soniq worker` as a real process: /metrics over HTTP, JSON logs, and no extras at all.

The jobs module is written into tmp_path; the worker runs there as a subprocess with
``python -m soniq worker``. Job state is read back through the public API.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from soniq import Soniq
from tests.acceptance.processes import start_soniq, until

JOBS_MODULE = """
import logging

from soniq import Soniq

app = Soniq()
log = logging.getLogger("obs.jobs")


@app.job(name="obs.ok")
def ok(n: int) -> int:
    log.info("working on %d", n)
    return n


@app.job(name="obs.broken", retries=0)
async def broken() -> None:
    raise RuntimeError("broken on purpose")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[Soniq]:
    """A producer with no handlers (enqueues by name), metrics and tracing off."""
    app = Soniq(database_url=database_url, enqueue_validation="none", tracing="off")
    try:
        yield app
    finally:
        await app.close()


async def status(app: Soniq, job_id: str) -> str | None:
    found = await app.get_job(job_id)
    return None if found is None else found["status"]


async def test_worker_process_serves_metrics_and_logs_json_lines(
    client: Soniq, database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "obs_jobs.py").write_text(JOBS_MODULE)
    port = free_port()
    env = {
        "SONIQ_DATABASE_URL": database_url,
        "SONIQ_JOBS_MODULES": "obs_jobs",
        "SONIQ_LOG_FORMAT": "json",
        "SONIQ_METRICS_HOST": "127.0.0.1",
        "SONIQ_METRICS_INTERVAL": "0.2",
        "SONIQ_POLL_INTERVAL": "0.5",
    }
    worker = start_soniq(tmp_path, "worker", ["worker", "--metrics-port", str(port)], env)
    try:
        ok_id = await client.enqueue("obs.ok", args={"n": 5})
        broken_id = await client.enqueue("obs.broken")

        async def settled() -> bool:
            return [await status(client, ok_id), await status(client, broken_id)] == [
                "done",
                "dead_letter",
            ]

        await until(settled, 30, "one job done and one dead-lettered", [worker])

        samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}

        async def scraped() -> bool:
            def fetch() -> str:
                url = f"http://127.0.0.1:{port}/metrics"
                with urllib.request.urlopen(url, timeout=5) as response:
                    body: bytes = response.read()
                return body.decode()

            samples.clear()
            for family in text_string_to_metric_families(await anyio.to_thread.run_sync(fetch)):
                for s in family.samples:
                    samples[(s.name, frozenset(s.labels.items()))] = s.value
            depth = ("soniq_queue_depth", frozenset({("queue", "default")}))
            return samples.get(depth) == 0

        await until(scraped, 30, "a scrape with the default queue drained", [worker])
        worker.proc.send_signal(signal.SIGTERM)
        assert await worker.wait_exit(30) == 0, worker.describe()
    finally:
        worker.kill()

    def value(name: str, job_name: str) -> float:
        return samples[(name, frozenset({("job_name", job_name), ("queue", "default")}))]

    assert value("soniq_jobs_started_total", "obs.ok") == 1
    assert value("soniq_jobs_succeeded_total", "obs.ok") == 1
    assert value("soniq_jobs_failed_total", "obs.ok") == 0
    assert value("soniq_jobs_duration_seconds_count", "obs.ok") == 1
    # Enqueued by name from a producer without the handler, so with the default 4
    # attempts (SONIQ_MAX_RETRIES=3): each attempt fails, the last is dead-lettered.
    assert value("soniq_jobs_started_total", "obs.broken") == 4
    assert value("soniq_jobs_failed_total", "obs.broken") == 4
    assert value("soniq_jobs_dead_lettered_total", "obs.broken") == 1
    assert value("soniq_jobs_duration_seconds_count", "obs.broken") == 4

    lines = [line for line in worker.log().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    (handler_line,) = [e for e in entries if e["message"] == "working on 5"]
    assert handler_line["logger"] == "obs.jobs"
    assert {k: handler_line[k] for k in ("job_id", "job_name", "queue", "attempt")} == {
        "job_id": ok_id,
        "job_name": "obs.ok",
        "queue": "default",
        "attempt": 1,
    }
    (buried,) = [e for e in entries if "dead-letter queue" in e["message"]]
    assert (buried["job_id"], buried["job_name"], buried["attempt"]) == (broken_id, "obs.broken", 4)
    assert any(f"127.0.0.1:{port}/metrics" in e["message"] for e in entries)


NO_EXTRAS = """
import asyncio
import importlib.abc
import sys


class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("prometheus_client", "opentelemetry"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None


sys.meta_path.insert(0, Missing())

from soniq import Soniq, SoniqError  # noqa: E402

app = Soniq(sys.argv[1])


@app.job(name="plain.job")
async def plain(n: int) -> int:
    return n * 2


async def main() -> None:
    job_id = await app.enqueue(plain, n=21)
    many = await app.enqueue_many(plain, [{"n": 1}])
    await app.run_worker(run_once=True)
    print("result", await app.get_result(job_id), await app.get_result(many[0]))
    await app.close()
    for setting in ({"metrics": True}, {"metrics_port": 9100}, {"tracing": "on"}):
        try:
            Soniq(sys.argv[1], **setting)
        except SoniqError as exc:
            print("refused", exc.code)
    extras = ("prometheus_client", "opentelemetry")
    print("loaded", sorted(m for m in sys.modules if m.split(".")[0] in extras))


asyncio.run(main())
"""


def test_soniq_works_without_either_extra(database_url: str, tmp_path: Path) -> None:
    script = tmp_path / "no_extras.py"
    script.write_text(textwrap.dedent(NO_EXTRAS))
    done = subprocess.run(
        [sys.executable, str(script), database_url],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "result 42 2",
        "refused SONIQ_METRICS_UNAVAILABLE",
        "refused SONIQ_METRICS_UNAVAILABLE",
        "refused SONIQ_TRACING_UNAVAILABLE",
        "loaded []",
    ]
