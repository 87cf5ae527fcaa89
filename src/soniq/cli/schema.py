"""Commands about the database schema: ``soniq setup``."""

from __future__ import annotations

import click

from soniq.app import Soniq
from soniq.cli.output import database_url_option, run


@click.command()
@database_url_option
def setup(database_url: str | None) -> None:
    """Create or upgrade Soniq's tables. Idempotent; safe to run concurrently."""

    async def go() -> list[str]:
        app = Soniq(database_url=database_url)
        try:
            return await app.setup()
        finally:
            await app.close()

    applied = run(go)
    if applied:
        click.echo(f"Applied migrations: {', '.join(applied)}")
    else:
        click.echo("Schema is up to date; nothing to apply.")
