"""``soniq limits``: see and change concurrency and rate limits across the fleet."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import click

from soniq.app import Soniq
from soniq.cli.durations import parse_duration
from soniq.cli.output import database_url_option, emit_json, emit_table, fail, json_option
from soniq.cli.session import with_app
from soniq.cli.when import parse_end
from soniq.core.limits import RateLimit
from soniq.errors import INVALID_ARGUMENT, SoniqError
from soniq.ops.limits import LimitGroupInfo

#: ``--rate``'s unit words, in seconds; anything else after the slash is a duration.
_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_RATE = re.compile(r"(\d+)/(.+)")
_RATE_HINT = "Use N/s, N/min, N/h or N/<duration>, e.g. 50/s, 100/min, 10/2s, 5/1h30m."

#: The columns of a group, in ``soniq limits list`` and ``soniq status``.
GROUP_COLUMNS = (
    ("name", "GROUP"),
    ("concurrency", "CONCURRENCY"),
    ("rate", "RATE"),
    ("running", "RUNNING"),
    ("queued", "QUEUED"),
    ("source", "SOURCE"),
)
_KEY_COLUMNS = (
    ("key", "KEY"),
    ("running", "RUNNING"),
    ("queued", "QUEUED"),
    ("blocked_until", "BLOCKED UNTIL (UTC)"),
)


@click.group("limits")
def group() -> None:
    """See and change concurrency and rate limits (fleet-wide, PostgreSQL only)."""


@group.command("list")
@click.option("--keys", "with_keys", is_flag=True, help="Also list each group's busiest keys.")
@json_option
@database_url_option
def list_limits(with_keys: bool, as_json: bool, database_url: str | None) -> None:
    """Print every limit group: its limits, where they come from, and its jobs.

    SOURCE is `code` (what the workers' code declares), `runtime` (set with `soniq
    limits set`, until `soniq limits clear`) or `missing` (jobs whose group no
    worker has declared yet: they run one at a time).
    """
    rows = with_app(database_url, lambda app: app.limits.list(keys=with_keys))
    if as_json:
        emit_json([info.as_dict() for info in rows])
        return
    emit_table([group_row(info.as_dict()) for info in rows], GROUP_COLUMNS, empty="No limits.")
    if with_keys:
        keys = [key.as_dict() for info in rows for key in info.keys or ()]
        if keys:
            click.echo("")
            emit_table(keys, _KEY_COLUMNS)


@group.command("set")
@click.argument("name", metavar="GROUP")
@click.option("--concurrency", type=int, metavar="N", help="At most N jobs per key at once.")
@click.option("--rate", metavar="N/PERIOD", help="At most N starts per key per period.")
@click.option("--burst", type=int, metavar="B", help="With --rate: allow B starts at once.")
@json_option
@database_url_option
def set_limits(
    name: str,
    concurrency: int | None,
    rate: str | None,
    burst: int | None,
    as_json: bool,
    database_url: str | None,
) -> None:
    """Set limit group GROUP's limits on every worker, from its next claim.

    They replace the group's limits as a whole (the one not given is no limit) and
    win over what the code declares, through worker restarts, until `soniq limits
    clear GROUP`. --concurrency 0 holds every job of the group.
    """
    try:
        if concurrency is None and rate is None:
            raise SoniqError(
                INVALID_ARGUMENT,
                f"Give --concurrency N, --rate N/PERIOD, or both, for group {name!r}. To go "
                "back to the limits its code declares, run `soniq limits clear GROUP`.",
            )
        if rate is None and burst is not None:
            raise SoniqError(INVALID_ARGUMENT, "--burst needs --rate, e.g. --rate 10/s --burst 5.")
        limit = None if rate is None else parse_rate(rate, burst)
    except SoniqError as exc:
        fail(exc)

    async def use(app: Soniq) -> LimitGroupInfo:
        return await app.limits.set(name, concurrency=concurrency, rate=limit)

    info = with_app(database_url, use)
    if as_json:
        emit_json(info.as_dict())
        return
    limits = limits_text(info.concurrency, info.rate_limit, info.rate_period, info.burst)
    click.echo(f"Set the limits of group {info.name!r} on all workers: {limits}.")


@group.command("clear")
@click.argument("name", metavar="GROUP")
@json_option
@database_url_option
def clear(name: str, as_json: bool, database_url: str | None) -> None:
    """Drop the limits `soniq limits set` gave GROUP: it goes back to what the code
    declares."""

    async def use(app: Soniq) -> bool:
        return await app.limits.clear(name)

    cleared = with_app(database_url, use)
    if as_json:
        emit_json({"name": name, "cleared": cleared})
    elif cleared:
        click.echo(f"Group {name!r} is back to the limits its code declares.")
    else:
        click.echo(f"Group {name!r} is not known: no worker declared it and none was set.")


@group.command("block")
@click.argument("key")
@click.option("--for", "for_", metavar="DURATION", help="Block for 30s, 15m, 2h, ...")
@click.option("--until", metavar="ISO", help="Block until this aware ISO 8601 time.")
@json_option
@database_url_option
def block(
    key: str, for_: str | None, until: str | None, as_json: bool, database_url: str | None
) -> None:
    """Start no job of limit key KEY ('GROUP' or 'GROUP:VALUE') on any worker for a
    while. Running jobs finish; a longer block already in force is kept."""
    try:
        end = _end(for_, until)
    except SoniqError as exc:
        fail(exc)

    async def use(app: Soniq) -> datetime:
        return await app.limits.block(key, until=end)

    blocked_until = with_app(database_url, use)
    if as_json:
        emit_json({"key": key, "blocked_until": blocked_until})
        return
    click.echo(f"Blocked key {key!r} on all workers until {blocked_until.isoformat()}.")


@group.command("unblock")
@click.argument("key")
@json_option
@database_url_option
def unblock(key: str, as_json: bool, database_url: str | None) -> None:
    """Lift the block on limit key KEY."""

    async def use(app: Soniq) -> bool:
        return await app.limits.unblock(key)

    unblocked = with_app(database_url, use)
    if as_json:
        emit_json({"key": key, "unblocked": unblocked})
    elif unblocked:
        click.echo(f"Unblocked key {key!r}.")
    else:
        click.echo(f"Key {key!r} was not blocked.")


def parse_rate(text: str, burst: int | None = None) -> RateLimit:
    """``--rate``: ``N/s``, ``N/m``, ``N/min``, ``N/h``, ``N/d`` or ``N/<duration>``
    (``10/2s``, ``5/1h30m``), N a positive whole number; SONIQ_INVALID_ARGUMENT else.
    The limits themselves are checked by ``app.limits.set``."""
    match = _RATE.fullmatch(text.strip().lower().replace(" ", ""))
    if match is None or int(match.group(1)) < 1:
        raise SoniqError(INVALID_ARGUMENT, f"--rate: cannot read {text!r} as a rate. {_RATE_HINT}")
    count, unit = int(match.group(1)), match.group(2)
    if unit in _UNITS:
        seconds = _UNITS[unit]
    else:
        try:
            seconds = parse_duration(unit, "--rate")
        except SoniqError:
            raise SoniqError(
                INVALID_ARGUMENT, f"--rate: cannot read the period of {text!r}. {_RATE_HINT}"
            ) from None
    if not 0 < seconds < math.inf:
        raise SoniqError(
            INVALID_ARGUMENT, f"--rate: the period of {text!r} must be above zero. {_RATE_HINT}"
        )
    return RateLimit(count, seconds, burst=1 if burst is None else burst)


def rate_text(limit: int | None, period: float | None, burst: int = 1) -> str:
    """A rate limit as ``--rate`` takes it (``50/s``, ``100/min``, ``10/2s``), with
    its burst; ``-`` for none."""
    if limit is None or period is None:
        return "-"
    names = {1.0: "s", 60.0: "min", 3600.0: "h", 86400.0: "d"}
    text = f"{limit}/{names.get(period, f'{period:g}s')}"
    return text if burst == 1 else f"{text} (burst {burst})"


def limits_text(
    concurrency: int | None, rate_limit: int | None, period: float | None, burst: int = 1
) -> str:
    """``concurrency 4, rate 50/s`` (``no limit`` for either one not set)."""
    rate = rate_text(rate_limit, period, burst)
    return (
        f"concurrency {'no limit' if concurrency is None else concurrency}, "
        f"rate {'no limit' if rate == '-' else rate}"
    )


def group_row(group: Mapping[str, Any]) -> dict[str, Any]:
    """A group (``LimitGroupInfo.as_dict()``) as :data:`GROUP_COLUMNS` print it."""
    concurrency = group["concurrency"]
    return {
        **group,
        "concurrency": "-" if concurrency is None else concurrency,
        "rate": rate_text(group["rate_limit"], group["rate_period"], group["burst"]),
    }


def _end(for_: str | None, until: str | None) -> float | datetime:
    if (for_ is None) == (until is None):
        raise SoniqError(
            INVALID_ARGUMENT, "Give --for DURATION or --until ISO (one of them) for the block."
        )
    end = parse_end(for_, until)
    assert end is not None
    return end
