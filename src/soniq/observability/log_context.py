"""Which job a log record is about, and how Soniq's processes write their logs.

The worker sets :data:`CURRENT_JOB` when a job starts, in the job's own task (and a
sync handler's thread gets a copy), so that anything logged while the job runs, by
Soniq or by your handler, can be tied to it. :class:`JobLogFilter` copies the job's
fields (``job_id``, ``job_name``, ``queue``, ``attempt``) onto each record; add it to
a handler. :class:`JsonLogFormatter` writes a record as one JSON object per line.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any, Protocol

from soniq.settings import SoniqSettings

#: The fields a record about a job carries.
JOB_FIELDS = ("job_id", "job_name", "queue", "attempt")

#: The format of ``soniq worker`` and ``soniq scheduler`` logs with SONIQ_LOG_FORMAT=text.
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _Job(Protocol):
    def log_extra(self) -> dict[str, Any]: ...


#: The job the current task (or sync handler thread) is running, if any.
CURRENT_JOB: ContextVar[_Job | None] = ContextVar("soniq_current_job", default=None)


def current_job_fields() -> dict[str, Any]:
    """``job_id``, ``job_name``, ``queue`` and ``attempt`` of the running job, or ``{}``."""
    job = CURRENT_JOB.get()
    return job.log_extra() if job is not None else {}


class JobLogFilter(logging.Filter):
    """Adds the running job's fields to every record logged while a job runs.

    Add it to a handler (``handler.addFilter(JobLogFilter())``): a handler's filters
    see the records of every logger that reaches it, your handlers' included. Fields
    a record already has (``extra=``) are left alone; records logged outside a job
    are passed through unchanged. It never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Copy the job's fields onto ``record``; always True."""
        job = CURRENT_JOB.get()
        if job is not None:
            fields = record.__dict__
            for key, value in job.log_extra().items():
                fields.setdefault(key, value)
        return True


# Attributes every LogRecord has; anything else on a record came from extra= or a filter.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, then the extra fields.

    ``time`` is ISO 8601 in UTC. The running job's fields are included even without
    :class:`JobLogFilter`. An exception's traceback goes in ``exception``. Values
    that are not JSON are written as their ``str()``.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as a single line of JSON."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        for key, value in current_job_fields().items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_process_logging(settings: SoniqSettings) -> None:
    """Log to stderr at ``SONIQ_LOG_LEVEL``, as text or JSON (``SONIQ_LOG_FORMAT``).

    For the ``soniq`` commands that run for long (worker, scheduler). Like
    :func:`logging.basicConfig`, it does nothing if the root logger already has a
    handler.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(JobLogFilter())
    if settings.log_format == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=settings.log_level, handlers=[handler])
