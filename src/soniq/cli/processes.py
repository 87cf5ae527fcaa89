"""The long-running commands: ``soniq worker`` and ``soniq scheduler``."""

from __future__ import annotations

import logging

import click

from soniq.app import Soniq
from soniq.cli.output import emit_table, fail, run
from soniq.cli.process_options import (
    merged_modules,
    process_options,
    process_settings,
    with_database_url,
)
from soniq.cli.worker_app import app_for_worker, import_jobs_modules
from soniq.errors import INVALID_ARGUMENT, SoniqError
from soniq.observability.log_context import configure_process_logging
from soniq.observability.metrics import require_prometheus
from soniq.recurring.periodic import SchedulerProcess, declared_periodic_jobs
from soniq.recurring.recurrence import from_row


@click.command()
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    help="Jobs in flight at once (default: $SONIQ_CONCURRENCY or 4).",
)
@click.option("--queues", help="Comma-separated queues to serve (default: all queues).")
@click.option("--run-once", is_flag=True, help="Process the jobs runnable now, then exit.")
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    help="Serve Prometheus metrics on this port at /metrics (default: $SONIQ_METRICS_PORT; "
    "off when unset). Needs soniq[metrics].",
)
@process_options
def worker(
    concurrency: int | None,
    queues: str | None,
    run_once: bool,
    metrics_port: int | None,
    jobs_modules: str | None,
    log_level: str | None,
    database_url: str | None,
) -> None:
    """Run jobs: import $SONIQ_JOBS_MODULES (and --jobs-modules), serve their handlers."""
    try:
        settings = process_settings(log_level)
        configure_process_logging(settings)
        modules = merged_modules(settings.jobs_modules, jobs_modules)
        if not modules:
            raise SoniqError(
                INVALID_ARGUMENT,
                "SONIQ_JOBS_MODULES is empty, so the worker knows no jobs. Set it to the "
                "modules that define them, e.g. SONIQ_JOBS_MODULES=myapp.jobs, or pass "
                "--jobs-modules myapp.jobs.",
            )
        if settings.metrics_enabled or metrics_port is not None:
            # Said now, not as an import failure of the first jobs module that builds an app.
            require_prometheus()
        import_jobs_modules(modules)
        app = with_database_url(app_for_worker(), database_url)
        if metrics_port is not None:
            app.settings = app.settings.model_copy(update={"metrics_port": metrics_port})
    except SoniqError as exc:
        fail(exc)
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

    run(go)


@click.command()
@click.option(
    "--list",
    "list_only",
    is_flag=True,
    help="Print every schedule, its state and next run, then exit.",
)
@click.option(
    "--check-interval",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds between the leader's looks for due schedules "
    "(default: $SONIQ_SCHEDULER_POLL_INTERVAL or 1).",
)
@process_options
def scheduler(
    list_only: bool,
    check_interval: float | None,
    jobs_modules: str | None,
    log_level: str | None,
    database_url: str | None,
) -> None:
    """Fire recurring jobs: import $SONIQ_JOBS_MODULES, sync their @app.periodic schedules.

    Run as many as you like; one leads (a PostgreSQL advisory lock) and the others
    take over within seconds if it stops. SIGINT/SIGTERM stop it cleanly.
    """
    if list_only:
        run(lambda: _print_schedules(database_url))
        return
    try:
        settings = process_settings(log_level)
        configure_process_logging(settings)
        modules = merged_modules(settings.jobs_modules, jobs_modules)
        if modules:
            import_jobs_modules(modules)
        else:
            logging.getLogger("soniq.scheduler").warning(
                "SONIQ_JOBS_MODULES is empty: no @app.periodic declarations to sync; only "
                "schedules added with app.scheduler.add() will fire."
            )
        app = with_database_url(app_for_worker(), database_url)
        declarations = declared_periodic_jobs()
    except SoniqError as exc:
        fail(exc)
    if check_interval is not None:
        app.settings = app.settings.model_copy(update={"scheduler_poll_interval": check_interval})
    # Schedules were checked when they were written; a task this process does not know
    # (added by another service) is enqueued by name, as a producer without handlers would.
    app.settings = app.settings.model_copy(update={"enqueue_validation": "none"})

    async def go() -> None:
        try:
            await SchedulerProcess(app, declarations).run()
        finally:
            await app.close()

    run(go)


async def _print_schedules(database_url: str | None) -> None:
    app = Soniq(database_url=database_url)
    try:
        rows = await app.scheduler.list()
    finally:
        await app.close()
    for row in rows:
        rule = from_row(row)
        row["schedule"] = rule.describe() + (", catch-up" if row["catch_up"] else "")
        if row["status"] != "active":
            row["next_run_at"] = None
    emit_table(
        rows,
        [
            ("name", "NAME"),
            ("schedule", "SCHEDULE"),
            ("status", "STATE"),
            ("next_run_at", "NEXT RUN (UTC)"),
            ("last_run_at", "LAST RUN (UTC)"),
        ],
        empty="No schedules.",
    )
