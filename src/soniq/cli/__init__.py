"""The ``soniq`` command line: one click group, a module per family of commands."""

from __future__ import annotations

import click

from soniq import __version__
from soniq.cli import dead_letter, jobs, limits, queues
from soniq.cli.demo import demo
from soniq.cli.dev import dev
from soniq.cli.fleet import inspect_fleet
from soniq.cli.plugins import PluginGroup, plugins_option
from soniq.cli.processes import scheduler, worker
from soniq.cli.prune import prune
from soniq.cli.schema import migrate, migrate_status, setup
from soniq.cli.status import status, workers
from soniq.cli.tasks import tasks, tasks_check


@click.group(cls=PluginGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="soniq")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@plugins_option
@click.pass_context
def main(ctx: click.Context, debug: bool, plugins: str | None) -> None:
    """Soniq: background jobs on PostgreSQL."""
    ctx.obj = {"debug": debug}


main.add_command(setup)
main.add_command(worker)
main.add_command(scheduler)
main.add_command(status)
main.add_command(workers)
main.add_command(inspect_fleet)
main.add_command(tasks)
main.add_command(tasks_check)
main.add_command(migrate)
# The original Soniq's spelling of `migrate status`.
main.add_command(migrate_status, "migrate-status")
main.add_command(prune)
main.add_command(jobs.group)
main.add_command(dead_letter.group)
main.add_command(queues.group)
main.add_command(limits.group)
main.add_command(dev)
main.add_command(demo)
