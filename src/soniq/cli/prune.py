"""``soniq prune``: delete old finished jobs now."""

from __future__ import annotations

import click

from soniq.app import Soniq
from soniq.cli.durations import format_duration, parse_duration
from soniq.cli.output import database_url_option, emit_json, fail, json_option
from soniq.cli.session import with_app
from soniq.errors import SoniqError
from soniq.ops.retention import prune_age


@click.command()
@click.option(
    "--older-than",
    metavar="DURATION",
    help="Delete jobs that finished longer ago than this: 90 (seconds), 15m, 2h, 7d, 1h30m. "
    "Default: $SONIQ_FINISHED_JOB_RETENTION.",
)
@json_option
@database_url_option
def prune(older_than: str | None, as_json: bool, database_url: str | None) -> None:
    """Delete finished (done and cancelled) jobs, in batches, and print how many.

    Workers already do this every $SONIQ_PRUNE_INTERVAL seconds; run it by hand to
    clear a backlog at once, or from cron when workers do not prune. A job whose
    result is younger than $SONIQ_RESULT_TTL is kept whatever --older-than says.
    Dead-lettered jobs are never touched.
    """
    try:
        seconds = None if older_than is None else parse_duration(older_than, "--older-than")
    except SoniqError as exc:
        fail(exc)

    async def ask(app: Soniq) -> tuple[int, float]:
        age = prune_age(app.settings, seconds)
        return await app.prune(seconds), age

    deleted, age = with_app(database_url, ask)
    if as_json:
        emit_json({"deleted": deleted, "older_than_seconds": age})
    else:
        click.echo(
            f"Deleted {deleted} finished job(s) that finished more than {format_duration(age)} ago."
        )
