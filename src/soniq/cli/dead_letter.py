"""``soniq dead-letter``: list, show, replay, purge, export and import dead letters."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import IO, Any, TypeVar, cast

import click

from soniq.app import Soniq
from soniq.cli.output import (
    database_url_option,
    emit_json,
    emit_record,
    emit_table,
    fail,
    json_option,
    progress,
)
from soniq.cli.session import with_app
from soniq.cli.when import parse_when
from soniq.errors import INVALID_ARGUMENT, JOB_NOT_FOUND, SoniqError
from soniq.ops.dead_letter_file import FORMATS, ExportFormat, ImportResult
from soniq.ops.filters import DeadLetterFilter

F = TypeVar("F", bound=Callable[..., Any])

#: ``@dry_run_option`` adds ``--dry-run`` (parameter ``dry_run``).
dry_run_option = click.option(
    "--dry-run", is_flag=True, help="Show what would be affected; change nothing."
)

_COLUMNS = [
    ("id", "ID"),
    ("job_name", "TASK"),
    ("queue", "QUEUE"),
    ("attempts", "ATTEMPTS"),
    ("dead_lettered_at", "DEAD-LETTERED (UTC)"),
    ("resurrection_count", "REPLAYS"),
    ("reason", "REASON"),
]


def filter_options(command: F) -> F:
    """Add the shared filters: --name, --queue, --reason, --since, --until."""
    for option in reversed(
        [
            click.option("--name", "job_name", help="Only dead letters of this task name."),
            click.option("--queue", help="Only dead letters from this queue."),
            click.option(
                "--reason",
                help="Only those whose reason or last error contains this text (any case).",
            ),
            click.option(
                "--since",
                help="Dead-lettered at or after: ISO 8601, or a duration ago (2h, 7d).",
            ),
            click.option("--until", help="Dead-lettered before: ISO 8601, or a duration ago."),
        ]
    ):
        command = option(command)
    return command


def _filters(
    job_name: str | None,
    queue: str | None,
    reason: str | None,
    since: str | None,
    until: str | None,
) -> dict[str, Any]:
    """The options as keyword arguments of the ``app.dead_letter`` methods."""
    return {
        "job_name": job_name,
        "queue": queue,
        "reason": reason,
        "since": parse_when(since, "--since"),
        "until": parse_when(until, "--until"),
    }


def interactive() -> bool:
    """May we ask the user a question? (Only when stdin and stderr are a terminal.)"""
    return sys.stdin.isatty() and sys.stderr.isatty()


def _checked(make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Filters from the command line, or the one-line error (before any I/O)."""
    try:
        filters = make()
        DeadLetterFilter.check(**filters)
    except SoniqError as exc:
        fail(exc)
    return filters


@click.group("dead-letter")
def group() -> None:
    """Inspect, replay, purge, export and import dead-lettered jobs."""


@group.command("list")
@filter_options
@click.option("--limit", type=int, default=100, show_default=True, help="At most this many.")
@click.option("--offset", type=int, default=0, show_default=True, help="Skip this many first.")
@json_option
@database_url_option
def list_dead_letters(
    job_name: str | None,
    queue: str | None,
    reason: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    offset: int,
    as_json: bool,
    database_url: str | None,
) -> None:
    """List dead letters, newest first."""
    filters = _checked(lambda: _filters(job_name, queue, reason, since, until))
    rows = with_app(
        database_url, lambda app: app.dead_letter.list(**filters, limit=limit, offset=offset)
    )
    if as_json:
        emit_json(rows)
    else:
        emit_table(rows, _COLUMNS, empty="No dead letters match.")


@group.command("show")
@click.argument("job_id")
@json_option
@database_url_option
def show(job_id: str, as_json: bool, database_url: str | None) -> None:
    """Print one dead letter, traceback included."""

    async def use(app: Soniq) -> dict[str, Any]:
        return await _dead_letter_or_fail(app, job_id)

    record = with_app(database_url, use)
    if as_json:
        emit_json(record)
    else:
        emit_record(record)


@group.command("replay")
@click.argument("job_id", required=False)
@filter_options
@click.option("--all", "everything", is_flag=True, help="Replay every dead letter.")
@click.option("--limit", type=int, help="Replay at most this many (the newest).")
@dry_run_option
@json_option
@database_url_option
def replay(
    job_id: str | None,
    job_name: str | None,
    queue: str | None,
    reason: str | None,
    since: str | None,
    until: str | None,
    everything: bool,
    limit: int | None,
    dry_run: bool,
    as_json: bool,
    database_url: str | None,
) -> None:
    """Queue dead letters again: one by ID, or every match of the filters (or --all).

    Each replay is a new job; the dead letter stays, its replay count raised. With
    --dry-run, print how many would be replayed and the first few, and write nothing.
    """
    filters = _checked(lambda: _filters(job_name, queue, reason, since, until))
    named = any(v is not None for v in filters.values())
    if job_id is not None:
        if named or everything or limit is not None:
            fail(_usage("Give a job ID, or filters / --all, not both."))
        if dry_run:
            _preview(database_url, "replayed", as_json, job_id=job_id)
            return
        new_id = with_app(database_url, lambda app: app.dead_letter.replay(job_id))
        if as_json:
            emit_json({"replayed": 1, "ids": [new_id]})
        else:
            click.echo(f"Replayed {job_id} as new job {new_id}.")
        return
    if not named and not everything:
        fail(_usage("Give a job ID, filters (--name, --queue, ...), or --all."))
    if named and everything:
        fail(_usage("--all replays every dead letter; leave it out to replay what matches."))
    if dry_run:
        if limit is not None and limit < 0:
            fail(SoniqError(INVALID_ARGUMENT, f"--limit must be 0 or more, got {limit}."))
        _preview(database_url, "replayed", as_json, filters=filters, limit=limit)
        return

    async def use(app: Soniq) -> list[str]:
        total = None
        if sys.stderr.isatty():
            total = await app.dead_letter.count(**filters)
            total = total if limit is None else min(total, limit)
        with progress(total, "Replaying") as advance:
            return await app.dead_letter.replay_many(**filters, limit=limit, progress=advance)

    new_ids = with_app(database_url, use)
    if as_json:
        emit_json({"replayed": len(new_ids), "ids": new_ids})
    else:
        click.echo(f"Replayed {len(new_ids)} dead letter(s).")


@group.command("purge")
@filter_options
@click.option("--all", "everything", is_flag=True, help="Delete every dead letter.")
@click.option("--yes", "-y", is_flag=True, help="Don't ask for confirmation.")
@dry_run_option
@json_option
@database_url_option
def purge(
    job_name: str | None,
    queue: str | None,
    reason: str | None,
    since: str | None,
    until: str | None,
    everything: bool,
    yes: bool,
    dry_run: bool,
    as_json: bool,
    database_url: str | None,
) -> None:
    """Delete the dead letters that match the filters (or every one, with --all).

    On a terminal it says how many and asks first, unless --yes. With --dry-run, print
    how many would be deleted and the first few, and write nothing.
    """
    filters = _checked(lambda: _filters(job_name, queue, reason, since, until))
    try:
        DeadLetterFilter.check(**filters).check_purge(everything)
    except SoniqError as exc:
        fail(exc)
    if dry_run:
        _preview(database_url, "deleted", as_json, filters=filters)
        return
    if not yes and interactive():
        count = with_app(database_url, lambda app: app.dead_letter.count(**filters))
        if count == 0:
            click.echo("No dead letters match; nothing to delete.")
            return
        click.confirm(f"Delete {count} dead letter(s) for good?", abort=True, err=True)
    deleted = with_app(database_url, lambda app: app.dead_letter.purge(**filters, all=everything))
    if as_json:
        emit_json({"deleted": deleted})
    else:
        click.echo(f"Deleted {deleted} dead letter(s).")


@group.command("export")
@filter_options
@click.option(
    "-o",
    "--output",
    default="-",
    show_default=True,
    help="File to write; - for standard output.",
)
@click.option(
    "--format",
    "file_format",
    type=click.Choice(FORMATS, case_sensitive=False),
    default="jsonl",
    show_default=True,
    help="jsonl (one object a line, what `import` reads), json (one array) or csv.",
)
@database_url_option
def export(
    job_name: str | None,
    queue: str | None,
    reason: str | None,
    since: str | None,
    until: str | None,
    output: str,
    file_format: str,
    database_url: str | None,
) -> None:
    """Write the matching dead letters, every column of each, newest first.

    As JSON Lines by default (`soniq dead-letter import` reads those back), or as one
    JSON array, or as CSV with a header row (args as JSON text, null as empty).
    """
    filters = _checked(lambda: _filters(job_name, queue, reason, since, until))
    chosen = cast(ExportFormat, file_format.lower())

    async def use(app: Soniq) -> int:
        total = await app.dead_letter.count(**filters) if sys.stderr.isatty() else None
        with _open(output, "w") as file, progress(total, "Exporting") as advance:
            return await app.dead_letter.export(file, **filters, progress=advance, format=chosen)

    written = with_app(database_url, use)
    where = "standard output" if output == "-" else output
    click.echo(f"Exported {written} dead letter(s) to {where}.", err=True)


@group.command("import")
@click.argument("file")
@json_option
@database_url_option
def import_(file: str, as_json: bool, database_url: str | None) -> None:
    """Load a file written by `soniq dead-letter export` (- for standard input).

    Every line is checked first; one bad line and nothing is imported. Dead letters
    whose id is already there are skipped.
    """

    async def use(app: Soniq) -> ImportResult:
        with _open(file, "r") as lines:
            return await app.dead_letter.import_(lines)

    result = with_app(database_url, use)
    if as_json:
        emit_json(result._asdict())
    else:
        click.echo(
            f"Imported {result.imported} dead letter(s); skipped {result.skipped} already present."
        )


#: How many dead letters a --dry-run lists (it counts them all).
PREVIEW_ROWS = 10


def _preview(
    database_url: str | None,
    verb: str,
    as_json: bool,
    *,
    job_id: str | None = None,
    filters: dict[str, Any] | None = None,
    limit: int | None = None,
) -> None:
    """--dry-run: how many dead letters the command would touch, and the first few."""

    async def use(app: Soniq) -> tuple[int, list[dict[str, Any]]]:
        if job_id is not None:
            return 1, [await _dead_letter_or_fail(app, job_id)]
        where = filters or {}
        total = await app.dead_letter.count(**where)
        if limit is not None:
            total = min(total, limit)
        if total == 0:
            return 0, []
        return total, await app.dead_letter.list(**where, limit=min(total, PREVIEW_ROWS))

    total, sample = with_app(database_url, use)
    if as_json:
        emit_json({"dry_run": True, "would_be_" + verb: total, "sample": sample})
        return
    click.echo(f"Dry run: {total} dead letter(s) would be {verb}; nothing was changed.")
    if sample:
        emit_table(sample, _COLUMNS)
        if total > len(sample):
            click.echo(f"... and {total - len(sample)} more.")


def _open(path: str, mode: str) -> IO[str]:
    """``path`` (``-``: stdin/stdout) as a UTF-8 text file, or SONIQ_INVALID_ARGUMENT."""
    try:
        file: IO[str] = click.open_file(path, mode, encoding="utf-8")
    except OSError as exc:
        verb = "read" if mode == "r" else "write"
        raise SoniqError(
            INVALID_ARGUMENT,
            f"Cannot {verb} {path!r}: {exc.strerror or exc}. Check the path (- means "
            f"standard {'input' if mode == 'r' else 'output'}).",
        ) from None
    return file


def _usage(message: str) -> SoniqError:
    return SoniqError(INVALID_ARGUMENT, message + " See `soniq dead-letter replay --help`.")


async def _dead_letter_or_fail(app: Soniq, job_id: str) -> dict[str, Any]:
    """The dead letter ``job_id``, or SONIQ_JOB_NOT_FOUND saying how to find one."""
    record = await app.dead_letter.get(job_id)
    if record is None:
        raise SoniqError(
            JOB_NOT_FOUND,
            f"No dead-lettered job {job_id}. List them with `soniq dead-letter list`.",
            job_id=job_id,
        )
    return record
