"""Running ``python -m soniq <command>`` as a subprocess in a test, and waiting on it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tests.helpers import wait_for


class SoniqProcess:
    """One ``soniq`` subprocess (a worker or a scheduler), its stderr captured to a file."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.name = name
        self.proc = proc
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def describe(self) -> str:
        """For failure messages: exit status and everything the worker logged."""
        status = "running" if self.alive() else f"exited with {self.proc.returncode}"
        return f"--- {self.name} (pid {self.proc.pid}) {status}; stderr:\n{self.log()}"

    async def wait_exit(self, timeout: float) -> int:
        await until(lambda: not self.alive(), timeout, f"{self.name} to exit", [self])
        code = self.proc.returncode
        assert code is not None
        return code

    async def wait_log(self, text: str, timeout: float = 10.0) -> None:
        await until(
            lambda: text in self.log() or not self.alive(),
            timeout,
            f"{text!r} in the log of {self.name}",
            [self],
        )
        assert text in self.log(), f"{self.name} died before logging {text!r}\n{self.describe()}"

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


async def until(
    predicate: Callable[[], object],
    timeout: float,
    what: str,
    workers: Sequence[SoniqProcess] = (),
    interval: float = 0.05,
) -> None:
    """:func:`tests.helpers.wait_for` (sync or async predicate) that, on timeout, adds
    the workers' state and stderr *as of the timeout* to the failure message."""
    try:
        await wait_for(predicate, timeout, interval, what)
    except AssertionError as exc:
        details = "\n".join(worker.describe() for worker in workers)
        raise AssertionError(f"{exc}\n{details}") from None


def start_soniq(
    workdir: Path,
    name: str,
    command: Sequence[str],
    env: Mapping[str, str],
    global_args: Sequence[str] = (),
) -> SoniqProcess:
    """Run ``python -m soniq [global_args] <command>`` in ``workdir``.

    The environment is this process's without any ``SONIQ_*`` variable, plus ``env``.
    Output goes to ``<name>.stdout`` and ``<name>.stderr`` in ``workdir``.
    """
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SONIQ_")}
    full_env.update(env)
    log_path = workdir / f"{name}.stderr"
    with log_path.open("wb") as err, (workdir / f"{name}.stdout").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "soniq", *global_args, *command],
            cwd=workdir,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
    return SoniqProcess(name, proc, log_path)
