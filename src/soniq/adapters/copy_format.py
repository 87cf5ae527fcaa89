"""The rows ``enqueue_many`` writes in bulk, and their COPY text encoding."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

Row = tuple[Any, ...]

#: Columns written by ``enqueue_many``'s COPY: per row an id and its args, then the
#: values every row of the batch shares (``scheduled_at`` and ``delayed`` only when a
#: time is given).
COPY_COLUMNS = (
    "id",
    "args",
    "job_name",
    "queue",
    "priority",
    "max_attempts",
    "producer_id",
    "scheduled_at",
    "delayed",
)

#: What the rows of one batch share: job_name, queue, priority, max_attempts,
#: producer_id[, scheduled_at, delayed]. ``delayed``: the time is still to come (see
#: copy_jobs_scheduled).
Shared = tuple[Any, ...]

# COPY text format: backslash, tab, newline and carriage return are escaped.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_field(value: object) -> str:
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return text.translate(_COPY_ESCAPES)


def copy_text(ids: Sequence[str], args: Sequence[str], shared: Shared) -> bytes:
    """COPY text-format bytes for ``copy_jobs``: the shared tail is escaped once."""
    tail = "\t" + "\t".join(_copy_field(v) for v in shared) + "\n"
    # json.dumps output has no raw control characters; only backslashes need escaping.
    body = "".join(
        f"{i}\t{a.replace(chr(92), chr(92) * 2) if chr(92) in a else a}{tail}"
        for i, a in zip(ids, args, strict=True)
    )
    return body.encode()


def bulk_insert_params(ids: Sequence[str], args: Sequence[str], shared: Shared) -> dict[str, Any]:
    """Parameters of ``insert_jobs`` for drivers without COPY: no dedup keys, one statement."""
    job_name, queue, priority, max_attempts, producer_id, *rest = shared
    return {
        "ids": list(ids),
        "args": list(args),
        "dedup_keys": [None] * len(ids),
        "limit_keys": [None] * len(ids),
        "job_name": job_name,
        "queue": queue,
        "priority": priority,
        "max_attempts": max_attempts,
        "scheduled_at": rest[0] if rest else None,
        "headers": None,
        "producer_id": producer_id,
        "watched": False,
    }
