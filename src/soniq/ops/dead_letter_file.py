"""The dead-letter export formats: JSON Lines (the default), a JSON array, or CSV.

``app.dead_letter.export`` writes them and ``import_`` reads JSON Lines back. Each line holds
every column of ``soniq_dead_letter_jobs`` under its column name; times are ISO 8601
strings with their UTC offset, ``args`` is the JSON object itself. Reading checks every
line before anything is written, so a bad file is refused whole.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal, NamedTuple, Protocol

from soniq.core.limits import check_limit_key
from soniq.errors import INVALID_ARGUMENT, INVALID_EXPORT, SoniqError

#: ``export``'s formats: JSON Lines (what ``import_`` reads), one JSON array, or CSV.
ExportFormat = Literal["jsonl", "json", "csv"]
FORMATS: tuple[str, ...] = ("jsonl", "json", "csv")

#: The columns, in the order an exported line lists them.
COLUMNS = (
    "id",
    "job_name",
    "args",
    "queue",
    "priority",
    "attempts",
    "max_attempts",
    "reason",
    "last_error",
    "traceback",
    "original_created_at",
    "started_at",
    "dead_lettered_at",
    "resurrection_count",
    "last_resurrected_at",
    "limit_key",
)

#: Columns that may be null, and so may be left out of a line. ``started_at`` (the
#: start of the last attempt) and ``limit_key`` (the concurrency and rate limit key a
#: replay runs under) are also missing from every line exported before they existed;
#: such lines import with them null.
NULLABLE = frozenset({"last_error", "traceback", "started_at", "last_resurrected_at", "limit_key"})

_TIMES = frozenset({"original_created_at", "started_at", "dead_lettered_at", "last_resurrected_at"})
_TEXTS = frozenset({"job_name", "queue", "reason", "last_error", "traceback", "limit_key"})
# Integer columns and the least value each takes (priority also has a ceiling).
_INTS = {"priority": 1, "attempts": 0, "max_attempts": 1, "resurrection_count": 0}
_MAX_PRIORITY = 1000


class ImportResult(NamedTuple):
    """What ``app.dead_letter.import_`` did: rows written, and ids already present."""

    imported: int
    skipped: int


def to_line(record: Mapping[str, Any]) -> str:
    """One dead-letter record as a line of the export format (with its newline)."""
    obj = {
        column: record[column].isoformat()
        if isinstance(record[column], datetime)
        else record[column]
        for column in COLUMNS
    }
    return json.dumps(obj, ensure_ascii=False, allow_nan=False) + "\n"


class Writable(Protocol):
    """A text file open for writing (anything with ``write(str)``)."""

    def write(self, text: str, /) -> object:
        """Write ``text``."""


class ExportWriter:
    """Writes dead-letter records to a text file in one of :data:`FORMATS`.

    ``jsonl``: one :func:`to_line` per record. ``json``: the same objects as one
    array. ``csv``: a header of :data:`COLUMNS`, then a row per record, ``args`` as
    JSON text, times in ISO 8601 and null as an empty field. Call :meth:`finish` once
    after the last record (a JSON array is closed there; an empty one is ``[]``).
    """

    def __init__(self, file: Writable, format: str) -> None:
        if format not in FORMATS:
            raise SoniqError(
                INVALID_ARGUMENT,
                f"Unknown export format {format!r}. Use one of: {', '.join(FORMATS)} "
                "(jsonl is the one import_ reads).",
            )
        self._file = file
        self._format = format
        self._count = 0
        if format == "csv":
            self._csv_row(COLUMNS)

    def write(self, record: Mapping[str, Any]) -> None:
        """Write one record."""
        if self._format == "jsonl":
            self._file.write(to_line(record))
        elif self._format == "json":
            self._file.write(("[\n" if self._count == 0 else ",\n") + to_line(record)[:-1])
        else:
            self._csv_row([_csv_cell(record[column]) for column in COLUMNS])
        self._count += 1

    def finish(self) -> None:
        """End the file (closes a JSON array)."""
        if self._format == "json":
            self._file.write("[]\n" if self._count == 0 else "\n]\n")

    def _csv_row(self, values: Iterable[str]) -> None:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(values)
        self._file.write(buffer.getvalue())


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def parse_lines(lines: Iterable[str | bytes]) -> list[dict[str, Any]]:
    """Check every line of an export; return the rows, ready to insert.

    Blank lines are skipped. Any other problem raises SONIQ_INVALID_EXPORT naming the
    first bad line (counted from 1).
    """
    rows: list[dict[str, Any]] = []
    number = 0
    it = iter(lines)
    while True:
        number += 1
        try:
            raw = next(it, None)
            if raw is None:
                return rows
            text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        except UnicodeDecodeError:  # a text file decodes as it is read
            raise _bad(number, "not UTF-8 text") from None
        if text.strip():
            rows.append(_parse_line(number, text))


def _no_constant(name: str) -> Any:
    # NaN and Infinity are not JSON, and jsonb refuses them.
    raise ValueError(f"{name} is not a JSON number")


def _bad(number: int, problem: str) -> SoniqError:
    return SoniqError(
        INVALID_EXPORT,
        f"Line {number} of the dead-letter file: {problem}. Nothing was imported; fix or "
        "remove that line and import again (lines come from app.dead_letter.export or "
        "`soniq dead-letter export`).",
        line=number,
    )


def _parse_line(number: int, text: str) -> dict[str, Any]:
    try:
        obj = json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:
        raise _bad(number, f"not valid JSON ({exc})") from None
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise _bad(number, "text that is not valid Unicode (a lone surrogate escape)") from None
    if not isinstance(obj, dict):
        raise _bad(number, f"expected a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(COLUMNS))
    if unknown:
        raise _bad(number, f"unknown field {unknown[0]!r}")
    row: dict[str, Any] = {}
    for column in COLUMNS:
        if column not in obj:
            if column in NULLABLE:
                row[column] = None
                continue
            raise _bad(number, f"missing field {column!r}")
        row[column] = _check(number, column, obj[column])
    return row


def _check(number: int, column: str, value: Any) -> Any:
    """One field's value as it is stored, or SONIQ_INVALID_EXPORT."""
    if value is None:
        if column in NULLABLE:
            return None
        raise _bad(number, f"field {column!r} must not be null")
    if column == "id":
        with contextlib.suppress(ValueError):
            if isinstance(value, str):
                return str(uuid.UUID(value))
        raise _bad(number, f"field 'id' must be a UUID string, got {value!r}")
    if column == "args":
        if not isinstance(value, dict):
            raise _bad(number, f"field 'args' must be a JSON object, got {type(value).__name__}")
        if "\\u0000" in json.dumps(value):
            raise _bad(number, "field 'args' contains a NUL character, which PostgreSQL refuses")
        return value
    if column in _INTS:
        low = _INTS[column]
        high = _MAX_PRIORITY if column == "priority" else None
        if not isinstance(value, int) or isinstance(value, bool):
            raise _bad(number, f"field {column!r} must be an integer, got {value!r}")
        if value < low or (high is not None and value > high):
            limits = f"from {low} to {high}" if high is not None else f"{low} or more"
            raise _bad(number, f"field {column!r} must be {limits}, got {value}")
        return value
    if column in _TIMES:
        return _check_time(number, column, value)
    if column in _TEXTS:
        if not isinstance(value, str):
            raise _bad(number, f"field {column!r} must be a string, got {type(value).__name__}")
        if column in ("job_name", "queue") and not value:
            raise _bad(number, f"field {column!r} must not be empty")
        if column == "limit_key":
            try:
                check_limit_key(value)  # the rule enqueue's limit_key= follows
            except SoniqError as exc:
                raise _bad(number, f"field 'limit_key': {exc.message}") from None
        if "\x00" in value:
            raise _bad(number, f"field {column!r} contains a NUL character")
        return value
    raise AssertionError(column)  # pragma: no cover - every column is handled above


def _check_time(number: int, column: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _bad(number, f"field {column!r} must be an ISO 8601 string, got {value!r}")
    # Python 3.10's fromisoformat does not read a trailing Z.
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise _bad(number, f"field {column!r} is not an ISO 8601 time: {value!r}") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise _bad(number, f"field {column!r} has no UTC offset: {value!r}")
    return parsed.isoformat()
