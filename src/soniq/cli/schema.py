"""Commands about the database schema: ``soniq setup`` and ``soniq migrate status``."""

from __future__ import annotations

import sys
from typing import Any

import click

from soniq.app import Soniq
from soniq.cli.output import database_url_option, emit_json, emit_table, json_option, run
from soniq.cli.session import refuse_memory, with_app


@click.command()
@click.option(
    "--queue-index",
    is_flag=True,
    help="Also build the index by queue (see `soniq queues index`), PostgreSQL only.",
)
@database_url_option
def setup(queue_index: bool, database_url: str | None) -> None:
    """Create or upgrade Soniq's tables. Idempotent; safe to run concurrently.

    The database itself must exist: if it does not, this prints the createdb command
    (or SQL) to run and exits non-zero.
    """

    async def go() -> tuple[list[str], bool]:
        app = Soniq(database_url=database_url)
        refuse_memory(app)
        try:
            # Never creates the database: in production that is the operator's call
            # (owner, encoding, locale); the error says what to run.
            applied = await app.setup(create_database=False)
            built = await app.queues.add_index() if queue_index else False
            return applied, built
        finally:
            await app.close()

    applied, built = run(go)
    if applied:
        click.echo(f"Applied migrations: {', '.join(applied)}")
    else:
        click.echo("Schema is up to date; nothing to apply.")
    if built:
        click.echo("Built the index by queue.")
    elif queue_index:
        click.echo("The index by queue is already there.")


@click.group()
def migrate() -> None:
    """Inspect the schema's migrations (`soniq setup` applies them)."""


@migrate.command("status")
@json_option
@database_url_option
def migrate_status(as_json: bool, database_url: str | None) -> None:
    """List applied migrations with their times, and pending ones.

    Exits with status 1 when any migration is pending, so a deploy script can run
    `soniq migrate status || soniq setup`, or refuse to start workers. Also works on a
    database where `soniq setup` never ran: everything is pending.
    """
    report = with_app(database_url, lambda app: app.migration_status())
    pending: list[str] = report["pending"]
    if as_json:
        emit_json(report)
    else:
        rows: list[dict[str, Any]] = [{**entry, "state": "applied"} for entry in report["applied"]]
        for entry in rows:
            if entry["version"] in report["unknown"]:
                entry["state"] = "applied (unknown to this Soniq)"
        rows += [{"version": version, "state": "pending"} for version in pending]
        emit_table(
            rows,
            [("version", "VERSION"), ("state", "STATE"), ("applied_at", "APPLIED (UTC)")],
        )
        if pending:
            click.echo(f"{len(pending)} migration(s) pending: run `soniq setup`.")
        else:
            click.echo("Schema is up to date.")
    sys.exit(1 if pending else 0)
