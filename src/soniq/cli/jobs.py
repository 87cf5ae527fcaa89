"""``soniq jobs``: list, show, cancel and retry the jobs in ``soniq_jobs``."""

from __future__ import annotations

from typing import Any

import click

from soniq.app import Soniq
from soniq.cli.output import (
    database_url_option,
    emit_json,
    emit_record,
    emit_table,
    fail,
    json_option,
)
from soniq.cli.session import with_app
from soniq.cli.when import parse_when
from soniq.errors import JOB_NOT_CANCELLABLE, JOB_NOT_FOUND, SoniqError
from soniq.ops.filters import job_id_param
from soniq.types import JobStatus

_COLUMNS = [
    ("id", "ID"),
    ("job_name", "TASK"),
    ("queue", "QUEUE"),
    ("status", "STATUS"),
    ("tries", "ATTEMPTS"),
    ("created_at", "CREATED (UTC)"),
    ("last_error", "LAST ERROR"),
]


async def _find(app: Soniq, job_id: str) -> dict[str, Any]:
    # The command refuses a malformed id (app.get_job answers None for it).
    job = await app.get_job(job_id_param(job_id))
    if job is None:
        raise SoniqError(
            JOB_NOT_FOUND,
            f"No job {job_id} in soniq_jobs or the dead-letter queue. "
            "List jobs with `soniq jobs list`.",
            job_id=job_id,
        )
    return job


@click.group("jobs")
def group() -> None:
    """Inspect and manage jobs: list, show, cancel, retry."""


@group.command("list")
@click.option(
    "--status",
    help=f"Only jobs in this state: {', '.join(s.value for s in JobStatus)}.",
)
@click.option("--queue", help="Only jobs in this queue.")
@click.option("--name", "job_name", help="Only jobs of this task name.")
@click.option("--since", help="Created at or after: ISO 8601, or a duration ago (2h, 7d).")
@click.option("--until", help="Created before: ISO 8601, or a duration ago (30m).")
@click.option("--limit", type=int, default=100, show_default=True, help="At most this many.")
@click.option("--offset", type=int, default=0, show_default=True, help="Skip this many first.")
@click.option(
    "--before",
    metavar="ID",
    help="Only jobs older than job ID: the last ID of a page gives the next page.",
)
@json_option
@database_url_option
def list_jobs(
    status: str | None,
    queue: str | None,
    job_name: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    offset: int,
    before: str | None,
    as_json: bool,
    database_url: str | None,
) -> None:
    """List jobs, newest first (by id: job ids are in creation order).

    A full page ends with the command that lists the next one (--before the page's last
    ID), which stays right while new jobs arrive; --offset counts from the newest job.
    """

    async def use(app: Soniq) -> list[dict[str, Any]]:
        return await app.list_jobs(
            status=status,
            queue=queue,
            job_name=job_name,
            since=parse_when(since, "--since"),
            until=parse_when(until, "--until"),
            limit=limit,
            offset=offset,
            before=before,
        )

    rows = with_app(database_url, use)
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        row["tries"] = f"{row['attempts']}/{row['max_attempts']}"
    emit_table(rows, _COLUMNS, empty="No jobs match.")
    if rows and len(rows) == limit:
        # On stderr, so that the table alone can be piped on.
        click.echo(f"Next page: add --before {rows[-1]['id']}", err=True)


@group.command("show")
@click.argument("job_id")
@json_option
@database_url_option
def show(job_id: str, as_json: bool, database_url: str | None) -> None:
    """Print everything about one job (dead-lettered ones included)."""
    job = with_app(database_url, lambda app: _find(app, job_id))
    if as_json:
        emit_json(job)
    else:
        emit_record(job)


@group.command("cancel")
@click.argument("job_id")
@json_option
@database_url_option
def cancel(job_id: str, as_json: bool, database_url: str | None) -> None:
    """Cancel a queued job, or ask the worker running it to stop it."""

    async def use(app: Soniq) -> tuple[bool, dict[str, Any]]:
        cancelled = await app.cancel_job(job_id)
        return cancelled, await _find(app, job_id)

    cancelled, job = with_app(database_url, use)
    status = job["status"]
    if not cancelled and status != "cancelled":
        fail(
            SoniqError(
                JOB_NOT_CANCELLABLE,
                f"Job {job['id']} is {status}; only queued and running jobs can be cancelled.",
                job_id=job["id"],
                status=status,
            )
        )
    # A running job gets a request (stamped); a queued one is cancelled outright.
    requested = cancelled and job["cancel_requested_at"] is not None
    if as_json:
        emit_json({"id": job["id"], "status": status, "requested": requested})
    elif not cancelled:
        click.echo(f"Job {job['id']} was already cancelled.")
    elif requested:
        click.echo(
            f"Asked the worker running job {job['id']} to stop it. It ends cancelled when "
            "the handler stops (done, if it finishes first); `soniq jobs show` follows it."
        )
    else:
        click.echo(f"Cancelled queued job {job['id']}.")


@group.command("retry")
@click.argument("job_id")
@json_option
@database_url_option
def retry(job_id: str, as_json: bool, database_url: str | None) -> None:
    """Run a job again: replay a dead letter, requeue a cancelled job, or hurry a retry."""
    job_id = _canonical(job_id)
    new_id = with_app(database_url, lambda app: app.retry_job(job_id))
    if as_json:
        emit_json({"id": new_id, "retried": job_id})
    elif new_id != job_id:
        click.echo(f"Replayed dead-lettered job {job_id} as new job {new_id}.")
    else:
        click.echo(f"Job {job_id} is queued and due now.")


def _canonical(job_id: str) -> str:
    """The id as Soniq writes it (lowercase, with dashes), or the one-line error."""
    try:
        return job_id_param(job_id)
    except SoniqError as exc:
        fail(exc)
