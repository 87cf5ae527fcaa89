"""``soniq tasks check`` and ``soniq tasks-check``: task names and stubs against the fleet.

``tasks check`` looks for task names in the database that the local jobs modules do
not register; ``tasks-check`` (the original Soniq's command) compares a stub package's
TaskRefs with what the workers serve (``soniq_task_registry``). ``tasks check --stubs``
runs both.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import click

from soniq.app import Soniq
from soniq.cli.durations import parse_duration
from soniq.cli.output import (
    database_url_option,
    debug_enabled,
    emit_json,
    emit_table,
    fail,
    json_option,
    run,
)
from soniq.cli.stubs import find_task_refs
from soniq.cli.worker_app import app_for_worker, import_jobs_modules
from soniq.enqueue.task_ref import TaskRef
from soniq.errors import INVALID_ARGUMENT, NO_TASK_REFS, SoniqError
from soniq.ops.task_drift import Finding, compare, unclaimed
from soniq.settings import SoniqSettings

#: ``tasks-check``'s exit status for drift and for a missing argument or URL.
DRIFT_EXIT = 2

_max_age_option = click.option(
    "--max-age",
    default="1d",
    show_default=True,
    help="Count a worker's registry rows refreshed this recently (90s, 30m, 2h, 7d).",
)


@click.group()
def tasks() -> None:
    """Check the task names your workers serve against the jobs in the database."""


@tasks.command()
@click.option(
    "--stubs",
    "stubs",
    metavar="PACKAGE",
    help="Also compare this stub package's TaskRefs with what the fleet serves "
    "(as `soniq tasks-check PACKAGE`).",
)
@_max_age_option
@json_option
@database_url_option
def check(stubs: str | None, max_age: str, as_json: bool, database_url: str | None) -> None:
    """Report task names that jobs use but $SONIQ_JOBS_MODULES does not register.

    Imports the modules as `soniq worker` does, then looks at queued, running and
    dead-lettered jobs. A name nothing registers is drift: a worker would dead-letter
    those jobs as not registered (a renamed task, a removed handler, a module missing
    from SONIQ_JOBS_MODULES). With --stubs PACKAGE it also compares the package's
    TaskRefs with the fleet's task registry, as `soniq tasks-check` does; then
    SONIQ_JOBS_MODULES may be empty (a producer's check), and only that comparison
    runs. Exits with status 1 when there is drift, 0 when there is none (and 1, with
    one line on stderr, on an error).
    """
    try:
        settings = SoniqSettings.load()
        seconds = parse_duration(max_age, "--max-age")
        refs = find_task_refs(stubs) if stubs is not None else None
        if not settings.jobs_modules and refs is None:
            raise SoniqError(
                INVALID_ARGUMENT,
                "SONIQ_JOBS_MODULES is empty, so no task is registered to check against. "
                "Set it to the modules your workers import, e.g. SONIQ_JOBS_MODULES=myapp.jobs, "
                "or compare a stub package with --stubs PACKAGE.",
            )
        local = bool(settings.jobs_modules)
        if local:
            import_jobs_modules(settings.jobs_modules)
            app = app_for_worker()
        else:
            app = Soniq()
    except SoniqError as exc:
        fail(exc)
    if database_url is not None:
        app.settings = app.settings.model_copy(update={"database_url": database_url})

    async def go() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        try:
            drift = await app.unregistered_tasks() if local else []
            served = await app.store.tasks.served(seconds) if refs is not None else []
            return drift, served
        finally:
            await app.close()

    drift, served = run(go)
    findings = compare(refs, served, max_age) if refs is not None else []
    registered = sorted(app.registry.names())
    stub_drift = any(f.drift for f in findings)
    if as_json:
        report: dict[str, Any] = {"registered": registered, "unregistered": drift}
        if refs is not None:
            report["stubs"] = _stub_json(findings, refs, served)
        emit_json(report)
        sys.exit(1 if drift or stub_drift else 0)
    if local and drift:
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
    elif local:
        click.echo(f"Every task name in use is registered ({len(registered)} registered).")
    if refs is not None:
        _print_findings(findings, stubs or "")
    sys.exit(1 if drift or stub_drift else 0)


@click.command("tasks-check")
@click.argument("package", required=False)
@_max_age_option
@json_option
@database_url_option
def tasks_check(package: str | None, max_age: str, as_json: bool, database_url: str | None) -> None:
    """Compare a stub package's TaskRefs with the tasks the fleet's workers serve.

    PACKAGE is a dotted module (its submodules are imported too) or a directory. Each
    worker writes the tasks it serves to soniq_task_registry at start and every
    $SONIQ_TASK_REGISTRY_INTERVAL seconds; rows refreshed within --max-age count.
    Each TaskRef is MISSING (no worker serves its name), QUEUE (the ref's queue is not
    the handler's, or no worker serving it claims from it), SCHEMA (its args model's
    JSON schema is not the workers') or OK. Exits with 0 when every ref matches, and
    with 2 on drift, without PACKAGE, or without a database URL (--database-url or
    $SONIQ_DATABASE_URL); 1, with one line on stderr, on any other error.
    """
    if package is None:
        _usage_exit(
            "Give the stub package to check: `soniq tasks-check myservice_tasks` (a dotted "
            "module or a directory)."
        )
    if not database_url:
        _usage_exit(
            "No database URL: pass --database-url or set SONIQ_DATABASE_URL to the database "
            "the workers use."
        )
    try:
        seconds = parse_duration(max_age, "--max-age")
        refs = find_task_refs(package)
    except SoniqError as exc:
        if exc.code == NO_TASK_REFS:
            _usage_exit(exc.message, exc.code)
        fail(exc)

    async def go() -> list[dict[str, Any]]:
        app = Soniq(database_url=database_url)
        try:
            return await app.store.tasks.served(seconds)
        finally:
            await app.close()

    served = run(go)
    findings = compare(refs, served, max_age)
    if as_json:
        emit_json(_stub_json(findings, refs, served))
    else:
        _print_findings(findings, package)
    sys.exit(DRIFT_EXIT if any(f.drift for f in findings) else 0)


def _usage_exit(message: str, code: str = INVALID_ARGUMENT) -> NoReturn:
    if debug_enabled():
        click.echo("(soniq --debug: a usage error has no traceback)", err=True)
    click.echo(f"soniq: error: {code}: {message}", err=True)
    sys.exit(DRIFT_EXIT)


def _print_findings(findings: list[Finding], package: str) -> None:
    drift = [f for f in findings if f.drift]
    emit_table(
        [{**f._asdict(), "state": f.state.upper()} for f in findings],
        [
            ("state", "STATE"),
            ("task_name", "TASK"),
            ("queue", "QUEUE"),
            ("workers", "WORKERS"),
            ("detail", "DETAIL"),
        ],
        max_width=120,
    )
    if drift:
        click.echo(f"{len(drift)} of {len(findings)} TaskRef(s) in {package} drift from the fleet.")
    else:
        click.echo(f"All {len(findings)} TaskRef(s) in {package} match what the fleet serves.")


def _stub_json(
    findings: list[Finding], refs: list[TaskRef[Any]], served: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "ok": not any(f.drift for f in findings),
        "refs": [f._asdict() for f in findings],
        "served_not_in_stubs": unclaimed(refs, served),
    }
