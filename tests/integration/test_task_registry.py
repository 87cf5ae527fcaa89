"""The fleet task registry: a real `soniq worker` writes what it serves, and
`soniq tasks-check` / `soniq tasks check --stubs` compare a stub package with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.acceptance.processes import SoniqProcess, start_soniq, until

SCHEMAS = """
from pydantic import BaseModel


class InvoiceArgs(BaseModel):
    order_id: str
    customer: str
"""

JOBS = """
from soniq import Soniq
from {stubs}.schemas import InvoiceArgs

app = Soniq()


@app.job(name="{prefix}.invoices.send", queue="billing", validate=InvoiceArgs)
async def send_invoice(order_id: str, customer: str) -> None:
    pass


@app.job(name="{prefix}.reports.build")
async def build_report() -> None:
    pass
"""


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def write_stubs(root: Path, package: str, prefix: str, refs: str) -> None:
    """A stub package: schemas.py, and the refs in a submodule (found by the walk)."""
    write(root / package / "__init__.py", "")
    write(root / package / "schemas.py", SCHEMAS)
    write(
        root / package / "billing" / "__init__.py",
        "from soniq import task_ref\n"
        f"from {package}.schemas import InvoiceArgs\n\n" + refs.format(prefix=prefix),
    )


def served_rows(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT task_name, worker_id, queue, worker_queues, args_schema, args_model_repr,"
            " last_seen_at, hostname FROM soniq_task_registry ORDER BY task_name"
        ).fetchall()


def soniq_cli(workdir: Path, *args: str, url: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SONIQ_")}
    if url is not None:
        env["SONIQ_DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "soniq", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def fleet(tmp_path: Path, database_url: str) -> Iterator[tuple[Path, str, str, SoniqProcess]]:
    """A running `soniq worker` on queues billing and default serving two tasks;
    (workdir, stub package name, task-name prefix, the worker)."""
    suffix = uuid.uuid4().hex[:8]
    stubs, prefix = f"stubs_{suffix}", f"svc{suffix}"
    write_stubs(tmp_path, stubs, prefix, "")
    write(tmp_path / f"jobs_{suffix}.py", JOBS.format(stubs=stubs, prefix=prefix))
    worker = start_soniq(
        tmp_path,
        "worker",
        ["worker", "--queues", "billing,default", "--log-level", "DEBUG"],
        {
            "SONIQ_DATABASE_URL": database_url,
            "SONIQ_JOBS_MODULES": f"jobs_{suffix}",
            "SONIQ_TASK_REGISTRY_INTERVAL": "0.2",
        },
    )
    try:
        yield tmp_path, stubs, prefix, worker
    finally:
        worker.kill()


async def test_a_worker_writes_its_tasks_and_keeps_them_fresh(
    fleet: tuple[Path, str, str, SoniqProcess], database_url: str
) -> None:
    _, stubs, prefix, worker = fleet
    await until(lambda: len(served_rows(database_url)) == 2, 20, "registry rows", [worker])
    first = served_rows(database_url)
    invoice, report = first
    assert invoice[0] == f"{prefix}.invoices.send" and report[0] == f"{prefix}.reports.build"
    assert invoice[1] == report[1]  # one worker id
    assert (invoice[2], report[2]) == ("billing", None)
    assert invoice[3] == ["billing", "default"]
    assert invoice[4]["properties"].keys() == {"order_id", "customer"}
    assert invoice[5] == f"{stubs}.schemas.InvoiceArgs"
    assert report[4] is None and report[5] is None
    assert invoice[7]
    # Refreshed with the interval (0.2 s here), not only at start.
    await until(lambda: served_rows(database_url)[0][6] > invoice[6], 20, "a refresh", [worker])


async def test_tasks_check_exits_0_when_the_stubs_match_the_fleet(
    fleet: tuple[Path, str, str, SoniqProcess], database_url: str
) -> None:
    workdir, stubs, prefix, worker = fleet
    write_stubs(
        workdir,
        "match_" + stubs,
        prefix,
        'send = task_ref("{prefix}.invoices.send", InvoiceArgs, default_queue="billing")\n'
        'build = task_ref("{prefix}.reports.build")\n',
    )
    await until(lambda: len(served_rows(database_url)) == 2, 20, "registry rows", [worker])
    result = soniq_cli(workdir, "tasks-check", "match_" + stubs, url=database_url)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert f"All 2 TaskRef(s) in match_{stubs} match" in result.stdout
    # A directory works as well as a dotted name, and --json says the same.
    result = soniq_cli(
        workdir, "tasks-check", str(workdir / ("match_" + stubs)), "--json", url=database_url
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert [r["state"] for r in report["refs"]] == ["ok", "ok"]


async def test_tasks_check_exits_2_on_an_unserved_name_or_another_queue(
    fleet: tuple[Path, str, str, SoniqProcess], database_url: str
) -> None:
    workdir, stubs, prefix, worker = fleet
    write_stubs(
        workdir,
        "drift_" + stubs,
        prefix,
        'send = task_ref("{prefix}.invoices.send", InvoiceArgs, default_queue="payments")\n'
        'gone = task_ref("{prefix}.invoices.void")\n'
        'build = task_ref("{prefix}.reports.build", default_queue="reports")\n',
    )
    await until(lambda: len(served_rows(database_url)) == 2, 20, "registry rows", [worker])
    result = soniq_cli(workdir, "tasks-check", "drift_" + stubs, url=database_url)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = {line.split()[1]: line for line in result.stdout.splitlines()[1:-1]}
    assert lines[f"{prefix}.invoices.void"].startswith("MISSING")
    assert lines[f"{prefix}.invoices.send"].startswith("QUEUE")
    assert "'payments'" in lines[f"{prefix}.invoices.send"]
    assert "'billing'" in lines[f"{prefix}.invoices.send"]
    # Registered without a queue, but the worker does not claim from "reports".
    assert lines[f"{prefix}.reports.build"].startswith("QUEUE")
    assert "claim only" in lines[f"{prefix}.reports.build"]
    assert "3 of 3 TaskRef(s)" in result.stdout


async def test_tasks_check_exits_2_when_the_args_schema_differs(
    fleet: tuple[Path, str, str, SoniqProcess], database_url: str
) -> None:
    workdir, stubs, prefix, worker = fleet
    package = "schema_" + stubs
    write_stubs(
        workdir,
        package,
        prefix,
        "from pydantic import BaseModel\n\n\n"
        "class InvoiceArgsV3(BaseModel):\n    order_id: int\n    customer: str\n\n\n"
        'send = task_ref("{prefix}.invoices.send", InvoiceArgsV3, default_queue="billing")\n',
    )
    await until(lambda: len(served_rows(database_url)) == 2, 20, "registry rows", [worker])
    result = soniq_cli(workdir, "tasks-check", package, url=database_url)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "SCHEMA" in result.stdout and "args schema differs" in result.stdout


async def test_tasks_check_counts_only_rows_seen_within_max_age(
    fleet: tuple[Path, str, str, SoniqProcess], database_url: str
) -> None:
    workdir, stubs, prefix, worker = fleet
    write_stubs(workdir, "age_" + stubs, prefix, 'build = task_ref("{prefix}.reports.build")\n')
    await until(lambda: len(served_rows(database_url)) == 2, 20, "registry rows", [worker])
    worker.kill()
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE soniq_task_registry SET last_seen_at = now() - interval '2 hours'")
    result = soniq_cli(workdir, "tasks-check", "age_" + stubs, "--max-age", "1h", url=database_url)
    assert result.returncode == 2 and "MISSING" in result.stdout, result.stdout
    assert "in the last 1h" in result.stdout
    result = soniq_cli(workdir, "tasks-check", "age_" + stubs, "--max-age", "3h", url=database_url)
    assert result.returncode == 0, (result.stdout, result.stderr)


def test_tasks_check_exits_2_without_a_package_or_a_database_url(
    tmp_path: Path, database_url: str
) -> None:
    result = soniq_cli(tmp_path, "tasks-check", url=database_url)
    assert result.returncode == 2
    assert result.stderr.startswith("soniq: error: SONIQ_INVALID_ARGUMENT: Give the stub")
    write_stubs(tmp_path, "nourl_stubs", "x", 'a = task_ref("x.a")\n')
    result = soniq_cli(tmp_path, "tasks-check", "nourl_stubs", url=None)
    assert result.returncode == 2
    assert "No database URL" in result.stderr
    # A package without any TaskRef is refused as a usage error too.
    write(tmp_path / "empty_stubs" / "__init__.py", "")
    result = soniq_cli(tmp_path, "tasks-check", "empty_stubs", url=database_url)
    assert result.returncode == 2 and "SONIQ_NO_TASK_REFS:" in result.stderr


def test_tasks_check_reports_a_stub_module_that_cannot_be_imported(
    tmp_path: Path, database_url: str
) -> None:
    write(tmp_path / "broken_stubs" / "__init__.py", "")
    write(tmp_path / "broken_stubs" / "refs.py", "import not_a_module_anywhere\n")
    result = soniq_cli(tmp_path, "tasks-check", "broken_stubs", url=database_url)
    assert result.returncode == 1
    assert "SONIQ_STUB_IMPORT_FAILED:" in result.stderr
    assert "broken_stubs.refs" in result.stderr
    result = soniq_cli(tmp_path, "tasks-check", "no_such_stubs", url=database_url)
    assert result.returncode == 1 and "SONIQ_STUB_IMPORT_FAILED:" in result.stderr


async def test_tasks_check_with_stubs_adds_the_fleet_comparison(
    fleet: tuple[Path, str, str, SoniqProcess], database_url: str
) -> None:
    workdir, stubs, prefix, worker = fleet
    write_stubs(workdir, "opt_" + stubs, prefix, 'gone = task_ref("{prefix}.invoices.void")\n')
    await until(lambda: len(served_rows(database_url)) == 2, 20, "registry rows", [worker])
    # A producer with no jobs modules: only the stub comparison runs; drift exits 1.
    result = soniq_cli(workdir, "tasks", "check", "--stubs", "opt_" + stubs, url=database_url)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "MISSING" in result.stdout
    assert "registered" not in result.stdout.splitlines()[0]
    result = soniq_cli(workdir, "tasks", "check", "--stubs", stubs, "--json", url=database_url)
    assert result.returncode == 1  # the fixture's own stub package declares no refs
    assert "SONIQ_NO_TASK_REFS:" in result.stderr


async def test_a_sqlite_worker_writes_the_registry_too(tmp_path: Path) -> None:
    import sqlite3

    from soniq import Soniq

    path = tmp_path / "jobs.db"
    app = Soniq(database_url=f"sqlite:///{path}")

    @app.job(name="lite.task", queue="lite")
    async def lite_task() -> None:
        pass

    try:
        await app.setup()
        await app.run_worker(run_once=True, queues=["lite"])
        rows = await app.store.tasks.served(60)
    finally:
        await app.close()
    assert [(r["task_name"], r["queue"], r["worker_queues"]) for r in rows] == [
        ("lite.task", "lite", ["lite"])
    ]
    assert rows[0]["last_seen_at"].tzinfo is not None
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM soniq_task_registry").fetchone() == (1,)


async def test_a_failed_registry_write_is_logged_and_the_worker_goes_on(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from soniq import Soniq

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP TABLE soniq_task_registry")
    app = Soniq(database_url=database_url)

    @app.job(name="resilient.task")
    async def resilient() -> str:
        return "ran"

    try:
        job_id = await app.enqueue(resilient)
        with caplog.at_level("WARNING", logger="soniq.worker"):
            await app.run_worker(run_once=True)
        job = await app.get_job(job_id)
    finally:
        await app.close()
    assert job is not None and job["status"] == "done"
    assert any("could not write the task registry" in r.message for r in caplog.records)
