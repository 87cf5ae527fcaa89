"""The ``soniq`` command line."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Coroutine
from datetime import datetime, timezone
from typing import Any, TypeVar

import anyio
import click

from soniq import __version__
from soniq.app import Soniq
from soniq.cli.worker_app import app_for_worker, import_jobs_modules
from soniq.errors import INVALID_ARGUMENT, SoniqError
from soniq.recurrence import from_row
from soniq.scheduler import SchedulerProcess, declared_periodic_jobs
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


@main.command()
@click.option(
    "--list",
    "list_only",
    is_flag=True,
    help="Print every schedule, its state and next run, then exit.",
)
@click.pass_context
def scheduler(ctx: click.Context, list_only: bool) -> None:
    """Fire recurring jobs: import $SONIQ_JOBS_MODULES, sync their @app.periodic schedules.

    Run as many as you like; one leads (a PostgreSQL advisory lock) and the others
    take over within seconds if it stops. SIGINT/SIGTERM stop it cleanly.
    """
    debug = ctx.obj["debug"]
    if list_only:
        _run(_print_schedules, debug)
        return
    try:
        settings = SoniqSettings.load()
        logging.basicConfig(
            level=settings.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        if settings.jobs_modules:
            import_jobs_modules(settings.jobs_modules)
        else:
            logging.getLogger("soniq.scheduler").warning(
                "SONIQ_JOBS_MODULES is empty: no @app.periodic declarations to sync; only "
                "schedules added with app.scheduler.add() will fire."
            )
        app = app_for_worker()
        declarations = declared_periodic_jobs()
    except SoniqError as exc:
        _fail(exc, debug)
        return
    # Schedules were checked when they were written; a task this process does not know
    # (added by another service) is enqueued by name, as a producer without handlers would.
    app.settings = app.settings.model_copy(update={"enqueue_validation": "none"})

    async def go() -> None:
        try:
            await SchedulerProcess(app, declarations).run()
        finally:
            await app.close()

    _run(go, debug)


async def _print_schedules() -> None:
    app = Soniq()
    try:
        rows = await app.scheduler.list()
    finally:
        await app.close()
    if not rows:
        click.echo("No schedules.")
        return
    table = [("NAME", "SCHEDULE", "STATE", "NEXT RUN (UTC)", "LAST RUN (UTC)")]
    for row in rows:
        rule = from_row(row)
        next_run = row["next_run_at"] if row["status"] == "active" else None
        table.append(
            (
                row["name"],
                rule.describe() + (", catch-up" if row["catch_up"] else ""),
                row["status"],
                _when(next_run),
                _when(row["last_run_at"]),
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for line in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def _when(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
