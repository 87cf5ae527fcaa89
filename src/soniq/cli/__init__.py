"""The ``soniq`` command line."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import anyio
import click

from soniq import __version__
from soniq.app import Soniq
from soniq.cli.worker_app import app_for_worker, import_jobs_modules
from soniq.errors import INVALID_ARGUMENT, SoniqError
from soniq.settings import SoniqSettings

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


def _fail(exc: SoniqError, debug: bool) -> None:
    if debug and "traceback" in exc.details:
        click.echo(exc.details["traceback"], err=True)
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


@main.command()
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    help="Jobs in flight at once (default: $SONIQ_CONCURRENCY or 4).",
)
@click.option("--queues", help="Comma-separated queues to serve (default: all queues).")
@click.option("--run-once", is_flag=True, help="Process the jobs runnable now, then exit.")
@click.pass_context
def worker(ctx: click.Context, concurrency: int | None, queues: str | None, run_once: bool) -> None:
    """Run jobs: import $SONIQ_JOBS_MODULES and serve their @app.job() handlers."""
    debug = ctx.obj["debug"]
    try:
        settings = SoniqSettings.load()
        logging.basicConfig(
            level=settings.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        if not settings.jobs_modules:
            raise SoniqError(
                INVALID_ARGUMENT,
                "SONIQ_JOBS_MODULES is empty, so the worker knows no jobs. Set it to the "
                "modules that define them, e.g. SONIQ_JOBS_MODULES=myapp.jobs.",
            )
        import_jobs_modules(settings.jobs_modules)
        app = app_for_worker()
    except SoniqError as exc:
        _fail(exc, debug)
        return
    queue_list = [q.strip() for q in queues.split(",") if q.strip()] if queues else None

    async def go() -> bool:
        try:
            return await app.run_worker(
                concurrency=concurrency or app.settings.concurrency,
                run_once=run_once,
                queues=queue_list,
            )
        finally:
            await app.close()

    _run(go, debug)
