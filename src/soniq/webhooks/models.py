"""The value types of webhooks: event names, endpoints, responses and results."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

#: The reserved task name of the delivery job that ``app.webhooks`` registers.
DELIVER_TASK = "soniq.webhooks.deliver"
#: How much of a response body is kept, in characters.
BODY_LIMIT = 4096


class WebhookTransportError(Exception):
    """No response came: the connection failed or the request timed out (retried).

    A custom :class:`~soniq.webhooks.WebhookTransport` raises it for the same cases.
    """


class WebhookEvent(str, enum.Enum):
    """The event names the original Soniq defined. ``send`` takes these or any other
    non-empty name; Soniq itself never sends an event on its own."""

    JOB_QUEUED = "job.queued"
    JOB_STARTED = "job.started"
    JOB_COMPLETED = "job.completed"
    JOB_FAILED = "job.failed"
    JOB_RETRIED = "job.retried"
    JOB_DEAD_LETTER = "job.dead_letter"
    JOB_RESURRECTED = "job.resurrected"
    QUEUE_BACKLOG = "queue.backlog"
    SYSTEM_ALERT = "system.alert"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class WebhookEndpoint:
    """A registered endpoint. ``events`` None takes every event; ``signed`` says
    whether it has a secret (the secret itself is never read back)."""

    id: str
    url: str
    events: tuple[str, ...] | None
    active: bool
    max_retries: int
    timeout_seconds: float
    #: Kept out of the repr: endpoint headers often carry credentials.
    headers: Mapping[str, str] = field(repr=False)
    signed: bool
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def from_record(cls, row: Mapping[str, Any]) -> WebhookEndpoint:
        """From a ``store.webhooks`` endpoint record."""
        events = row["events"]
        return cls(
            id=row["id"],
            url=row["url"],
            events=None if events is None else tuple(events),
            active=bool(row["active"]),
            max_retries=int(row["max_retries"]),
            timeout_seconds=float(row["timeout_seconds"]),
            headers=dict(row["headers"] or {}),
            signed=bool(row["signed"]),
            created_at=row.get("created_at"),
            updated_at=row.get("updated_at"),
        )


@dataclass(frozen=True)
class WebhookResponse:
    """What a receiver answered: the status, the first ``BODY_LIMIT`` characters of the
    body, and the headers (names lowercased)."""

    status_code: int
    body: str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WebhookResult:
    """One attempt at a delivery, as stored in the delivery job's result.

    ``status_code`` and ``body`` are None when no response came (``error`` says why);
    ``retry_in`` is the delay before the next attempt, None when there is none.
    """

    delivery_id: str
    endpoint_id: str
    event: str
    url: str
    attempt: int
    delivered: bool
    status_code: int | None
    body: str | None
    duration_ms: float
    error: str | None = None
    retry_in: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data."""
        return asdict(self)
