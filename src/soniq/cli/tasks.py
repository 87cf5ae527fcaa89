"""``soniq tasks check``: task names in the database that no handler registers."""

from __future__ import annotations

import sys
from typing import Any

import click

from soniq.cli.output import (
    database_url_option,
    emit_json,
    emit_table,
    fail,
    json_option,
    run,
)
from soniq.cli.worker_app import app_for_worker, import_jobs_modules
from soniq.errors import INVALID_ARGUMENT, SoniqError
from soniq.settings import SoniqSettings


@click.group()
def tasks() -> None:
    """Check the task names your workers serve against the jobs in the database."""


@tasks.command()
@json_option
@database_url_option
def check(as_json: bool, database_url: str | None) -> None:
    """Report task names that jobs use but $SONIQ_JOBS_MODULES does not register.

    Imports the modules as `soniq worker` does, then looks at queued, running and
    dead-lettered jobs. A name nothing registers is drift: a worker would dead-letter
    those jobs as not registered (a renamed task, a removed handler, a module missing
    from SONIQ_JOBS_MODULES). Exits with status 1 when there is drift, 0 when there is
    none (and 1, with one line on stderr, on an error).
    """
    try:
        settings = SoniqSettings.load()
        if not settings.jobs_modules:
            raise SoniqError(
                INVALID_ARGUMENT,
                "SONIQ_JOBS_MODULES is empty, so no task is registered to check against. "
                "Set it to the modules your workers import, e.g. SONIQ_JOBS_MODULES=myapp.jobs.",
            )
        import_jobs_modules(settings.jobs_modules)
        app = app_for_worker()
    except SoniqError as exc:
        fail(exc)
    if database_url is not None:
        app.settings = app.settings.model_copy(update={"database_url": database_url})

    async def go() -> list[dict[str, Any]]:
        try:
            return await app.unregistered_tasks()
        finally:
            await app.close()

    drift = run(go)
    registered = sorted(app.registry.names())
    if as_json:
        emit_json({"registered": registered, "unregistered": drift})
    elif drift:
        click.echo(
            f"{len(drift)} task name(s) in the database have no registered handler "
            f"({len(registered)} registered):"
        )
        emit_table(
            drift,
            [
                ("job_name", "TASK NAME"),
                ("queued", "QUEUED"),
                ("processing", "PROCESSING"),
                ("dead_letter", "DEAD"),
            ],
        )
    else:
        click.echo(f"Every task name in use is registered ({len(registered)} registered).")
    sys.exit(1 if drift else 0)
