"""The ``soniq`` command line."""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import anyio
import click

from soniq import __version__
from soniq.app import Soniq
from soniq.errors import SoniqError

T = TypeVar("T")


def _run(make: Callable[[], Coroutine[Any, Any, T]], debug: bool) -> T:
    """Run a coroutine; a SoniqError becomes one line on stderr and exit status 1."""
    try:
        return anyio.run(make)
    except SoniqError as exc:
        if debug:
            raise
        click.echo(f"soniq: error: {exc}", err=True)
        sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="soniq")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Soniq: background jobs on PostgreSQL."""
    ctx.obj = {"debug": debug}


@main.command()
@click.option(
    "--database-url",
    envvar="SONIQ_DATABASE_URL",
    help="PostgreSQL URL (default: $SONIQ_DATABASE_URL).",
)
@click.pass_context
def setup(ctx: click.Context, database_url: str | None) -> None:
    """Create or upgrade Soniq's tables. Idempotent; safe to run concurrently."""

    async def go() -> list[str]:
        app = Soniq(database_url=database_url)
        try:
            return await app.setup()
        finally:
            await app.close()

    applied = _run(go, ctx.obj["debug"])
    if applied:
        click.echo(f"Applied migrations: {', '.join(applied)}")
    else:
        click.echo("Schema is up to date; nothing to apply.")
