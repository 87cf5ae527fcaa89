"""`soniq worker --metrics-port` and SONIQ_LOG_FORMAT through click's CliRunner."""

from __future__ import annotations

import socket
import sys
import uuid
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client import REGISTRY

import soniq.app_base
import soniq.cli.worker_app
import soniq_sync
from soniq.cli import main

JOBS_MODULE = """
from soniq import Soniq

app = Soniq()


@app.job(name="{name}")
async def job() -> str:
    return "ok"
"""


@pytest.fixture
def jobs_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> Iterator[tuple[str, str]]:
    """A jobs module in tmp_path (the current directory) with one job; (module, task)."""
    suffix = uuid.uuid4().hex[:8]
    module, task = f"cli_jobs_{suffix}", f"cli.job-{suffix}"
    (tmp_path / f"{module}.py").write_text(JOBS_MODULE.format(name=task))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SONIQ_DATABASE_URL", database_url)
    monkeypatch.setenv("SONIQ_JOBS_MODULES", module)
    monkeypatch.setenv("SONIQ_METRICS_HOST", "127.0.0.1")
    # The worker picks the first app that registers jobs: only this test's apps count.
    apps: weakref.WeakValueDictionary[int, soniq.app_base.AppBase] = weakref.WeakValueDictionary()
    monkeypatch.setattr(soniq.app_base, "INSTANCES", apps)
    monkeypatch.setattr(soniq.cli.worker_app, "INSTANCES", apps)
    yield module, task
    sys.modules.pop(module, None)


def enqueue_by_name(url: str, task: str, count: int) -> None:
    producer = soniq_sync.Soniq(url, enqueue_validation="none")
    try:
        producer.enqueue_many(task, [{}] * count)
    finally:
        producer.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_run_once_with_a_metrics_port_records_the_jobs(
    jobs_module: tuple[str, str], database_url: str
) -> None:
    _, task = jobs_module
    enqueue_by_name(database_url, task, 2)
    labels = {"job_name": task, "queue": "default"}
    port = free_port()
    result = CliRunner().invoke(
        main, ["worker", "--run-once", "--metrics-port", str(port)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert REGISTRY.get_sample_value("soniq_jobs_started_total", labels) == 2
    assert REGISTRY.get_sample_value("soniq_jobs_succeeded_total", labels) == 2


@pytest.mark.parametrize("port", ["0", "65536", "web"])
def test_a_bad_metrics_port_is_a_usage_error(port: str) -> None:
    result = CliRunner().invoke(main, ["worker", "--metrics-port", port])
    assert result.exit_code == 2
    assert "--metrics-port" in result.output


def test_metrics_without_the_extra_fail_before_starting(
    jobs_module: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    result = CliRunner().invoke(main, ["worker", "--run-once", "--metrics-port", "9100"])
    assert result.exit_code == 1
    assert "SONIQ_METRICS_UNAVAILABLE" in result.output
    assert "pip install 'soniq[metrics]'" in result.output


def test_an_unknown_log_format_is_refused(
    jobs_module: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SONIQ_LOG_FORMAT", "yaml")
    result = CliRunner().invoke(main, ["worker", "--run-once"])
    assert result.exit_code == 1
    assert "SONIQ_INVALID_SETTING" in result.output and "SONIQ_LOG_FORMAT" in result.output
