"""How every ``soniq`` command talks to people and scripts.

Tables for a terminal, ``--json`` for scripts, one line on stderr and a non-zero exit
for an error (a traceback only with ``soniq --debug``), and progress bars only when
stderr is a terminal.
"""

from __future__ import annotations

import contextlib
import json
import sys
import traceback
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from datetime import date, datetime, timezone
from typing import Any, NoReturn, TypeVar
from uuid import UUID

import anyio
import click

from soniq.errors import SoniqError

T = TypeVar("T")

#: ``@json_option`` adds ``--json`` (parameter ``as_json``) to a command.
json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON for scripts instead of a table."
)

#: ``@database_url_option`` adds ``--database-url`` (default ``$SONIQ_DATABASE_URL``).
database_url_option = click.option(
    "--database-url",
    envvar="SONIQ_DATABASE_URL",
    help="PostgreSQL URL (default: $SONIQ_DATABASE_URL).",
)


def debug_enabled() -> bool:
    """Did the user pass ``soniq --debug``?"""
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx else None
    return bool(root and isinstance(root.obj, dict) and root.obj.get("debug"))


def fail(exc: BaseException, exit_code: int = 1) -> NoReturn:
    """Report ``exc`` as one line on stderr and exit ``exit_code`` (with ``--debug``,
    print its traceback first)."""
    if debug_enabled():
        if isinstance(exc, SoniqError) and "traceback" in exc.details:
            click.echo(exc.details["traceback"], err=True)
        else:
            click.echo("".join(traceback.format_exception(exc)), err=True)
    if isinstance(exc, SoniqError):
        message = str(exc)
    else:
        # Server errors carry DETAIL/CONTEXT lines; the first line is the message.
        first = (str(exc).strip().splitlines() or [""])[0]
        message = f"{type(exc).__name__}: {first}"
    click.echo(f"soniq: error: {message}", err=True)
    sys.exit(exit_code)


def run(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine for a command; any error becomes :func:`fail`'s one line."""
    try:
        return anyio.run(make)
    except (SoniqError, OSError) as exc:
        fail(exc)
    except Exception as exc:  # a database error, a bug: still one line by default
        if debug_enabled():
            raise
        fail(exc)


def to_jsonable(value: Any) -> Any:
    """``value`` with datetimes as ISO 8601 strings and UUIDs as strings."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (date, UUID)):
        return str(value)
    return value


def emit_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout."""
    click.echo(json.dumps(to_jsonable(value), indent=2, sort_keys=False))


def cell(value: Any) -> str:
    """How one value reads in a table: UTC times to the second, ``-`` for nothing."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value).replace("\n", " ")


def emit_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[tuple[str, str]],
    *,
    empty: str = "Nothing to show.",
    max_width: int = 60,
) -> None:
    """Print ``rows`` as aligned columns; ``columns`` pairs a key with its heading."""
    if not rows:
        click.echo(empty)
        return
    table = [[heading for _, heading in columns]]
    for row in rows:
        table.append([_clip(cell(row.get(key)), max_width) for key, _ in columns])
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def emit_record(record: Mapping[str, Any]) -> None:
    """Print one record as ``key: value`` lines (multi-line values indented)."""
    width = max((len(k) for k in record), default=0)
    for key, value in record.items():
        text = value if isinstance(value, str) else cell(value)
        lines = text.splitlines() or [""]
        click.echo(f"{key.ljust(width)}  {lines[0]}")
        for extra in lines[1:]:
            click.echo(f"{' ' * width}  {extra}")


@contextlib.contextmanager
def progress(length: int | None, label: str) -> Iterator[Callable[[int], None]]:
    """A bar on stderr when it is a terminal; yields ``advance(n)``. Silent otherwise."""
    if not sys.stderr.isatty():
        yield lambda n: None
        return
    bar: Any = click.progressbar(length=length, label=label, file=sys.stderr)
    with bar:
        yield bar.update


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
