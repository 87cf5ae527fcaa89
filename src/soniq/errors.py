"""Every error Soniq raises on purpose, with its stable code.

Codes are part of the public contract: match on ``err.code``, never on the message.
A message says what was wrong and what to do about it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# Configuration
INVALID_SETTING = "SONIQ_INVALID_SETTING"
DATABASE_URL_MISSING = "SONIQ_DATABASE_URL_MISSING"
INVALID_DATABASE_URL = "SONIQ_INVALID_DATABASE_URL"
DATABASE_UNREACHABLE = "SONIQ_DATABASE_UNREACHABLE"
SCHEMA_MISSING = "SONIQ_SCHEMA_MISSING"
NOT_SUPPORTED_BY_BACKEND = "SONIQ_NOT_SUPPORTED_BY_BACKEND"
SQLITE_TOO_OLD = "SONIQ_SQLITE_TOO_OLD"
APP_FROZEN = "SONIQ_APP_FROZEN"
DATABASE_MISSING = "SONIQ_DATABASE_MISSING"
INVALID_DATABASE_NAME = "SONIQ_INVALID_DATABASE_NAME"

# Registration and task names
INVALID_TASK_NAME = "SONIQ_INVALID_TASK_NAME"
DUPLICATE_TASK_NAME = "SONIQ_DUPLICATE_TASK_NAME"
INVALID_JOB_OPTION = "SONIQ_INVALID_JOB_OPTION"

# Enqueue
UNKNOWN_TASK_NAME = "SONIQ_UNKNOWN_TASK_NAME"
INVALID_TARGET = "SONIQ_INVALID_TARGET"
TASK_ARGS_INVALID = "SONIQ_TASK_ARGS_INVALID"
ARGS_NOT_SERIALIZABLE = "SONIQ_ARGS_NOT_SERIALIZABLE"
ARGS_CONFLICT = "SONIQ_ARGS_CONFLICT"
NAIVE_DATETIME = "SONIQ_NAIVE_DATETIME"
INVALID_SCHEDULE = "SONIQ_INVALID_SCHEDULE"
INVALID_PRIORITY = "SONIQ_INVALID_PRIORITY"
INVALID_QUEUE = "SONIQ_INVALID_QUEUE"
INVALID_DEDUP_KEY = "SONIQ_INVALID_DEDUP_KEY"
UNSUPPORTED_CONNECTION = "SONIQ_UNSUPPORTED_CONNECTION"
TRANSACTION_NOT_JOINABLE = "SONIQ_TRANSACTION_NOT_JOINABLE"
INVALID_JOB_ID = "SONIQ_INVALID_JOB_ID"
INVALID_ARGUMENT = "SONIQ_INVALID_ARGUMENT"
JOB_NOT_FOUND = "SONIQ_JOB_NOT_FOUND"
ENQUEUE_CONFLICT = "SONIQ_ENQUEUE_CONFLICT"

# Retention and pruning
INVALID_DURATION = "SONIQ_INVALID_DURATION"
RETENTION_OFF = "SONIQ_RETENTION_OFF"

# Worker
JOBS_MODULE_IMPORT_FAILED = "SONIQ_JOBS_MODULE_IMPORT_FAILED"

# Cross-service task stubs (soniq tasks-check)
STUB_IMPORT_FAILED = "SONIQ_STUB_IMPORT_FAILED"
NO_TASK_REFS = "SONIQ_NO_TASK_REFS"

# Recurring jobs (schedules DSL, @app.periodic, app.scheduler)
INVALID_CRON = "SONIQ_INVALID_CRON"
INVALID_INTERVAL = "SONIQ_INVALID_INTERVAL"
INVALID_TIMEZONE = "SONIQ_INVALID_TIMEZONE"
CRON_OR_EVERY = "SONIQ_CRON_OR_EVERY"
SCHEDULE_NOT_FOUND = "SONIQ_SCHEDULE_NOT_FOUND"

# Observability (metrics, tracing)
METRICS_UNAVAILABLE = "SONIQ_METRICS_UNAVAILABLE"
METRICS_NAME_TAKEN = "SONIQ_METRICS_NAME_TAKEN"
METRICS_PORT_UNAVAILABLE = "SONIQ_METRICS_PORT_UNAVAILABLE"
TRACING_UNAVAILABLE = "SONIQ_TRACING_UNAVAILABLE"

# Operating jobs and dead letters (app.retry_job, app.dead_letter, soniq jobs/dead-letter)
FILTER_REQUIRED = "SONIQ_FILTER_REQUIRED"
INVALID_EXPORT = "SONIQ_INVALID_EXPORT"
JOB_NOT_RETRYABLE = "SONIQ_JOB_NOT_RETRYABLE"
JOB_NOT_CANCELLABLE = "SONIQ_JOB_NOT_CANCELLABLE"
RESULT_INVALID = "SONIQ_RESULT_INVALID"

# Flow control (app.queues)
PAUSE_NOT_CONFIRMED = "SONIQ_PAUSE_NOT_CONFIRMED"
# Flow control (concurrency and rate limits, app.limits)
LIMIT_KEY_INVALID = "SONIQ_LIMIT_KEY_INVALID"
LIMITS_NEED_READ_COMMITTED = "SONIQ_LIMITS_NEED_READ_COMMITTED"

# Finishing a job in the handler's transaction (ctx.complete), progress, waiting
JOB_LEASE_LOST = "SONIQ_JOB_LEASE_LOST"
NOT_SAME_DATABASE = "SONIQ_NOT_SAME_DATABASE"
COMPLETE_OUTSIDE_HANDLER = "SONIQ_COMPLETE_OUTSIDE_HANDLER"
COMPLETE_TWICE = "SONIQ_COMPLETE_TWICE"
COMPLETE_NEEDS_TRANSACTION = "SONIQ_COMPLETE_NEEDS_TRANSACTION"
WAIT_IN_HANDLER = "SONIQ_WAIT_IN_HANDLER"
JOB_FAILED = "SONIQ_JOB_FAILED"
JOB_CANCELLED = "SONIQ_JOB_CANCELLED"
JOB_GONE = "SONIQ_JOB_GONE"
WAIT_INTERRUPTED = "SONIQ_WAIT_INTERRUPTED"

# Development server and demo (soniq dev, soniq demo)
EMBEDDED_UNAVAILABLE = "SONIQ_EMBEDDED_UNAVAILABLE"
EMBEDDED_DATA_DIR_INVALID = "SONIQ_EMBEDDED_DATA_DIR_INVALID"
EMBEDDED_START_FAILED = "SONIQ_EMBEDDED_START_FAILED"
DEMO_DATABASE_UNAVAILABLE = "SONIQ_DEMO_DATABASE_UNAVAILABLE"

# Middleware and plugins
INVALID_MIDDLEWARE = "SONIQ_INVALID_MIDDLEWARE"
PLUGIN_INVALID = "SONIQ_PLUGIN_INVALID"
PLUGIN_DUPLICATE = "SONIQ_PLUGIN_DUPLICATE"
PLUGIN_LOAD_FAILED = "SONIQ_PLUGIN_LOAD_FAILED"
PANEL_DUPLICATE = "SONIQ_PANEL_DUPLICATE"
INVALID_MIGRATION_SOURCE = "SONIQ_INVALID_MIGRATION_SOURCE"

# Webhooks (app.webhooks, soniq[webhooks])
WEBHOOKS_UNAVAILABLE = "SONIQ_WEBHOOKS_UNAVAILABLE"
INVALID_WEBHOOK = "SONIQ_INVALID_WEBHOOK"
WEBHOOK_DELIVERY_FAILED = "SONIQ_WEBHOOK_DELIVERY_FAILED"

# Test helpers (soniq.testing, soniq_sync.testing, the pytest plugin)
DRAIN_LIMIT = "SONIQ_DRAIN_LIMIT"

# Kept from the original Soniq: the codes of its exception classes (MigrationError,
# AmbiguousAppError below)
MIGRATION_FAILED = "SONIQ_MIGRATION_FAILED"
AMBIGUOUS_APP = "SONIQ_AMBIGUOUS_APP"
# app.scheduler.start() on a blocking soniq_sync app
SCHEDULER_ASYNC_ONLY = "SONIQ_SCHEDULER_ASYNC_ONLY"

ALL_CODES: frozenset[str] = frozenset(
    value for name, value in dict(globals()).items() if name.isupper() and isinstance(value, str)
)


class SoniqError(Exception):
    """An error Soniq raised on purpose.

    ``code`` is a stable string such as ``"SONIQ_UNKNOWN_TASK_NAME"``; ``message`` is
    for people. Extra context (the offending setting, task name, ...) is in
    ``details``; ``suggestions`` lists what to try, and may be empty. ``str(err)`` is
    ``"SONIQ_CODE: message"`` (then ``" Suggestions: a; b"`` when there are any), one
    line that starts with the code.

    The original Soniq's names are kept too: ``error_code`` is ``code`` and ``context``
    is ``details``.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        suggestions: Iterable[str] | None = None,
        **details: Any,
    ) -> None:
        self.code = code
        self.message = message
        self.details = details
        self.suggestions: list[str] = [str(s) for s in suggestions or ()]
        super().__init__(self._text())

    @property
    def error_code(self) -> str:
        """The stable code, as the original Soniq named it (same as ``code``)."""
        return self.code

    @property
    def context(self) -> dict[str, Any]:
        """The extra context, as the original Soniq named it (same as ``details``)."""
        return self.details

    def _text(self) -> str:
        text = f"{self.code}: {self.message}"
        if self.suggestions:
            text += " Suggestions: " + "; ".join(self.suggestions)
        return text

    def __reduce__(self) -> tuple[Any, ...]:
        # By attributes, not by __init__: subclasses fix the code in their own
        # signatures, and each must come back as its own class.
        return (_rebuild, (type(self), self.code, self.message, self.details, self.suggestions))

    def locate(self, where: str, **details: Any) -> None:
        """Say where in a larger call the error is: ``where`` goes before the message,
        ``details`` join the others. The error keeps its class and code."""
        self.message = f"{where}: {self.message}"
        self.details.update(details)
        self.args = (self._text(),)


class SoniqTypeError(SoniqError, TypeError):
    """A call of the wrong shape: a value of the wrong type, or arguments that do not
    go together (``args=`` with a function target, a target that is not a function,
    string or ``TaskRef``).

    Also a ``TypeError``, which is what the original Soniq (and Python) raised for
    these, so ``except TypeError`` keeps working. The code says which mistake it was.
    """


class SoniqValueError(SoniqError, ValueError):
    """A value of the right type that Soniq cannot accept: a bad cron expression or
    interval, both or neither of ``cron=`` and ``every=``, a setting out of range.

    Also a ``ValueError``, which is what the original Soniq raised for these, so
    ``except ValueError`` keeps working. The code says which mistake it was.
    """


class SoniqTypeValueError(SoniqError, TypeError, ValueError):
    """A bad value that is also of the wrong type, such as ``cron(5)``: both a
    ``TypeError`` and a ``ValueError``, so code written for either catches it."""


class BackendUnsupportedError(SoniqValueError):
    """A call the app's storage backend cannot serve, such as ``connection=`` on SQLite.

    Code ``SONIQ_NOT_SUPPORTED_BY_BACKEND``. It is also a ``ValueError``: the argument
    is wrong for this backend, whatever its value.
    """

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(NOT_SUPPORTED_BY_BACKEND, message, **details)


class ArgsNotSerializableError(SoniqTypeError):
    """Arguments that JSON cannot carry (a ``UUID``, ``datetime``, set, NaN, an object).

    Code ``SONIQ_ARGS_NOT_SERIALIZABLE``. It is also a ``TypeError``, which is what
    Django's tasks framework (and ``json.dumps``) raise for such a value, so code
    written against either catches it.
    """

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(ARGS_NOT_SERIALIZABLE, message, **details)


class MigrationError(SoniqError):
    """Applying Soniq's migrations failed (the original's ``MigrationError``).

    Code ``SONIQ_MIGRATION_FAILED``; ``details["version"]`` names the migration.
    """

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(MIGRATION_FAILED, message, **details)


class AmbiguousAppError(SoniqError, RuntimeError):
    """Several Soniq apps were found where one was expected, and none stands out
    (the original's ``AmbiguousAppError``, also a ``RuntimeError``).

    Code ``SONIQ_AMBIGUOUS_APP``.
    """

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(AMBIGUOUS_APP, message, **details)


class PanelDuplicateError(SoniqValueError):
    """A dashboard panel id that the app already has.

    Code ``SONIQ_PANEL_DUPLICATE``. It is also a ``ValueError``, which is what the
    original Soniq raised for it, so code written against that still catches it.
    """

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(PANEL_DUPLICATE, message, **details)


class WebhookDeliveryError(SoniqError):
    """A webhook delivery that will not be attempted again (the receiver refused it
    with a 4xx, or every attempt failed). The delivery job fails with it, code
    ``SONIQ_WEBHOOK_DELIVERY_FAILED``, and goes to the dead-letter queue."""

    #: The worker dead-letters a job that raises an error with ``retryable = False``
    #: at once, whatever attempts it has left.
    retryable = False

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(WEBHOOK_DELIVERY_FAILED, message, **details)


class JobFailed(SoniqError):
    """The awaited job was dead-lettered: it failed its last attempt, or failed in a
    way that is not retried (``handle.result()``).

    Code ``SONIQ_JOB_FAILED``. ``error`` is the job's last error text, ``job_id`` its
    id and ``outcome`` the :class:`~soniq.waiting.JobOutcome` that was read.
    """

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(JOB_FAILED, message, **details)

    @property
    def job_id(self) -> str:
        """The id of the job that failed."""
        return str(self.details.get("job_id"))

    @property
    def error(self) -> str | None:
        """The job's last error (the exception's text), or None if it left none."""
        error = self.details.get("error")
        return None if error is None else str(error)

    @property
    def outcome(self) -> Any:
        """The job's :class:`~soniq.waiting.JobOutcome` (status ``dead_letter``)."""
        return self.details.get("outcome")


class JobCancelled(SoniqError):
    """The awaited job was cancelled (``handle.result()``). Code ``SONIQ_JOB_CANCELLED``;
    ``job_id`` and ``outcome`` as for :class:`JobFailed`."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(JOB_CANCELLED, message, **details)

    @property
    def job_id(self) -> str:
        """The id of the job that was cancelled."""
        return str(self.details.get("job_id"))

    @property
    def outcome(self) -> Any:
        """The job's :class:`~soniq.waiting.JobOutcome` (status ``cancelled``)."""
        return self.details.get("outcome")


class JobGone(SoniqError):
    """The awaited job's outcome can no longer be known: no row has its id (it was
    pruned or deleted, or never existed), or it finished longer ago than
    SONIQ_RESULT_TTL, so its result is no longer kept. Code ``SONIQ_JOB_GONE``."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(JOB_GONE, message, **details)

    @property
    def job_id(self) -> str:
        """The id that was waited for."""
        return str(self.details.get("job_id"))


def _rebuild(
    cls: type[SoniqError],
    code: str,
    message: str,
    details: dict[str, Any],
    suggestions: list[str],
) -> SoniqError:
    err = cls.__new__(cls)
    SoniqError.__init__(err, code, message, suggestions=suggestions, **details)
    return err


def schema_missing(pending: list[str], setup_call: str = "await app.setup()") -> SoniqError:
    """The error for a database whose schema lacks the ``pending`` migrations;
    ``setup_call`` is how the app at hand runs setup."""
    return SoniqError(
        SCHEMA_MISSING,
        f"The database is missing Soniq migrations {', '.join(pending)}. "
        f"Run `soniq setup` (or `{setup_call}`) first.",
        pending=pending,
    )
