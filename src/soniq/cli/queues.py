"""``soniq queues``: pause, resume, limit and list queues across the fleet."""

from __future__ import annotations

import click

from soniq.app import Soniq
from soniq.cli.limits import limits_text, parse_rate, rate_text
from soniq.cli.output import database_url_option, emit_json, emit_table, fail, json_option
from soniq.cli.session import with_app
from soniq.cli.when import parse_end
from soniq.errors import INVALID_ARGUMENT, PAUSE_NOT_CONFIRMED, SoniqError
from soniq.ops.queues import QueueInfo

_COLUMNS = (
    ("name", "QUEUE"),
    ("state", "STATE"),
    ("queued", "QUEUED"),
    ("processing", "RUNNING"),
    ("concurrency", "CONCURRENCY"),
    ("rate", "RATE"),
    ("paused_until", "UNTIL"),
    ("reason", "REASON"),
)


@click.group("queues")
def group() -> None:
    """Pause, resume, limit and list queues (fleet-wide, PostgreSQL only)."""


@group.command("list")
@json_option
@database_url_option
def list_queues(as_json: bool, database_url: str | None) -> None:
    """Print each queue with jobs queued or running, paused, or limited, and its state."""
    rows = with_app(database_url, lambda app: app.queues.list())
    if as_json:
        emit_json([row.as_dict() for row in rows])
        return
    emit_table([_row(info) for info in rows], _COLUMNS, empty="No queues have jobs or pauses.")


@group.command("pause")
@click.argument("name")
@click.option("--for", "for_", metavar="DURATION", help="Resume by itself after 30m, 2h, ...")
@click.option("--until", metavar="ISO", help="Resume by itself at this aware ISO 8601 time.")
@click.option("--reason", help="Why, for whoever looks at the queue next.")
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Wait until every live worker has given back the queue's unstarted jobs.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="How long --wait waits; past it, exit with code 3 (the pause stays).",
)
@json_option
@database_url_option
def pause(
    name: str,
    for_: str | None,
    until: str | None,
    reason: str | None,
    wait: bool,
    timeout: float,
    as_json: bool,
    database_url: str | None,
) -> None:
    """Stop every worker from starting jobs of queue NAME ('*': every queue).

    Enqueue goes on; running jobs finish. Scheduled, retried and recovered jobs of
    the queue wait until `soniq queues resume NAME`. To stop one worker, send it
    SIGTERM instead: a pause applies to all workers. Exit code 3: the queue is
    paused, but some live worker did not confirm within --timeout.
    """
    try:
        end = parse_end(for_, until)
    except SoniqError as exc:
        fail(exc)

    async def use(app: Soniq) -> QueueInfo | SoniqError:
        try:
            return await app.queues.pause(
                name, until=end, reason=reason, wait=wait, timeout=timeout
            )
        except SoniqError as exc:
            if exc.code != PAUSE_NOT_CONFIRMED:
                raise
            return exc

    outcome = with_app(database_url, use)
    if isinstance(outcome, SoniqError):
        if as_json:
            emit_json(
                {
                    **outcome.details["pause"],
                    "confirmed": False,
                    "unconfirmed": outcome.details["unconfirmed"],
                }
            )
        fail(outcome, exit_code=3)
    if as_json:
        emit_json({**outcome.as_dict(), "confirmed": wait})
        return
    what = "every queue" if outcome.name == "*" else f"queue {outcome.name!r}"
    until_text = outcome.paused_until.isoformat() if outcome.paused_until else "resumed"
    confirmed = "; every live worker confirmed" if wait else ""
    click.echo(f"Paused {what} on all workers until {until_text}{confirmed}.")


@group.command("resume")
@click.argument("name")
@json_option
@database_url_option
def resume(name: str, as_json: bool, database_url: str | None) -> None:
    """Let workers take jobs of queue NAME again ('*': lift a pause of every queue)."""

    async def use(app: Soniq) -> bool:
        return await app.queues.resume(name)

    resumed = with_app(database_url, use)
    if as_json:
        emit_json({"name": name, "resumed": resumed})
    elif resumed:
        click.echo(f"Resumed queue {name!r}.")
    else:
        click.echo(f"Queue {name!r} was not paused.")


@group.command("limit")
@click.argument("name")
@click.option("--concurrency", type=int, metavar="N", help="At most N of its jobs at once.")
@click.option("--rate", metavar="N/PERIOD", help="At most N of its jobs start per period.")
@click.option("--burst", type=int, metavar="B", help="With --rate: allow B starts at once.")
@click.option("--clear", is_flag=True, help="Drop the queue's limits instead.")
@json_option
@database_url_option
def limit(
    name: str,
    concurrency: int | None,
    rate: str | None,
    burst: int | None,
    clear: bool,
    as_json: bool,
    database_url: str | None,
) -> None:
    """Limit queue NAME as a whole, on every worker, from its next claim (or --clear).

    Both limits count every job of the queue, with a limit key or not (a keyed job
    must also be within its key's limits). They replace the queue's limits as a whole
    (the one not given is no limit) and stay through worker restarts until --clear.
    --concurrency 0 holds every job of the queue.
    """
    try:
        if clear and (concurrency is not None or rate is not None or burst is not None):
            raise SoniqError(INVALID_ARGUMENT, "--clear takes no --concurrency, --rate or --burst.")
        if not clear and concurrency is None and rate is None:
            raise SoniqError(
                INVALID_ARGUMENT,
                f"Give --concurrency N, --rate N/PERIOD, or both, for queue {name!r}; or "
                "--clear to drop its limits.",
            )
        if rate is None and burst is not None:
            raise SoniqError(INVALID_ARGUMENT, "--burst needs --rate, e.g. --rate 10/s --burst 5.")
        per = None if rate is None else parse_rate(rate, burst)
    except SoniqError as exc:
        fail(exc)

    if clear:
        cleared = with_app(database_url, lambda app: app.queues.clear_limits(name))
        if as_json:
            emit_json({"name": name, "cleared": cleared})
        elif cleared:
            click.echo(f"Dropped the limits of queue {name!r}.")
        else:
            click.echo(f"Queue {name!r} had no limits.")
        return

    async def use(app: Soniq) -> QueueInfo:
        return await app.queues.set_limits(name, concurrency=concurrency, rate=per)

    info = with_app(database_url, use)
    if as_json:
        emit_json(info.as_dict())
        return
    limits = limits_text(info.concurrency, info.rate_limit, info.rate_period, info.burst)
    click.echo(f"Set the limits of queue {info.name!r} on all workers: {limits}.")


@group.command("index")
@click.option("--drop", is_flag=True, help="Drop the index instead of building it.")
@json_option
@database_url_option
def index(drop: bool, as_json: bool, database_url: str | None) -> None:
    """Build (or --drop) the index by queue.

    With it, a worker serving only some queues (--queues, or all but the paused ones)
    claims from each queue's part of the index, so another queue's backlog, paused or
    not served, does not slow its claims. It costs each enqueue one more index entry.
    Built CONCURRENTLY: jobs go on meanwhile. Running workers are told.
    """

    async def use(app: Soniq) -> bool:
        return await (app.queues.drop_index() if drop else app.queues.add_index())

    changed = with_app(database_url, use)
    present = changed != drop
    if as_json:
        emit_json({"queue_index": present, "changed": changed})
    elif changed:
        click.echo("Dropped the index by queue." if drop else "Built the index by queue.")
    else:
        click.echo(f"The index by queue {'was not there' if drop else 'is already there'}.")


def _row(info: QueueInfo) -> dict[str, object]:
    return {
        "name": info.name,
        "state": "paused" if info.paused else "active",
        "queued": info.queued,
        "processing": info.processing,
        "concurrency": "-" if info.concurrency is None else info.concurrency,
        "rate": rate_text(info.rate_limit, info.rate_period, info.burst),
        "paused_until": info.paused_until.isoformat() if info.paused_until else "-",
        "reason": info.reason or "-",
    }
