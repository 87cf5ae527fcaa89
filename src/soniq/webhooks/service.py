"""``app.webhooks``: endpoints, and events sent to them as durable, signed deliveries.

``send`` writes one delivery row and one job of the reserved task
``soniq.webhooks.deliver`` per endpoint that takes the event, in one transaction (the
caller's with ``connection=``). A worker runs the job: it POSTs the event, signed, and
retries answers worth retrying with backoff (see :mod:`soniq.webhooks.retry`); other
answers fail the job at once. ``soniq_sync``'s twin of this module is generated from
it by ``tools/async_to_sync.py``.
"""

from __future__ import annotations

import builtins
import json
import logging
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Protocol
from urllib.parse import urlsplit

from soniq.adapters import AsyncAdapter, async_adapter
from soniq.adapters.sqlstate import sqlstate
from soniq.core.registry import JobRegistry, build_spec
from soniq.errors import (
    INVALID_WEBHOOK,
    SCHEMA_MISSING,
    ArgsNotSerializableError,
    BackendUnsupportedError,
    SoniqError,
    SoniqValueError,
    WebhookDeliveryError,
)
from soniq.settings import DEFAULT_TASK_NAME_PATTERN, SoniqSettings
from soniq.storage.store import Store
from soniq.storage.urls import storage_kind
from soniq.types import JobContext, Snooze
from soniq.version import __version__
from soniq.webhooks.models import (
    DELIVER_TASK,
    WebhookEndpoint,
    WebhookEvent,
    WebhookResult,
    WebhookTransportError,
)
from soniq.webhooks.retry import backoff, is_retryable, is_success, retry_after
from soniq.webhooks.secrets import SecretUnreadable, seal, unseal
from soniq.webhooks.signing import sign_webhook
from soniq.webhooks.transport import HTTPTransport, WebhookTransport

logger = logging.getLogger("soniq.webhooks")

#: Headers Soniq sets on every request; an endpoint's own ``headers`` may not.
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "user-agent",
        "x-webhook-event",
        "x-webhook-delivery",
        "x-webhook-timestamp",
        "x-webhook-signature",
    }
)
_STATUSES = ("pending", "delivered", "failed")
#: The longest ``timeout_seconds`` an endpoint may have.
_MAX_REQUEST_TIMEOUT = 3600.0


class WriteJobs(Protocol):
    """Writes delivery jobs on an open transaction (``Soniq._write_jobs_on``)."""

    async def __call__(
        self, adapter: AsyncAdapter, target: str, args_list: Sequence[Mapping[str, Any]]
    ) -> builtins.list[str]: ...


class WebhookHost(Protocol):
    """What the service needs of its app."""

    store: Store

    @property
    def settings(self) -> SoniqSettings:
        """The settings in force."""

    @property
    def registry(self) -> JobRegistry:
        """The registered jobs."""

    async def ensure_initialized(self) -> None:
        """Connect and check the schema."""

    def _current_connection(self, connection: object) -> object:
        """``connection=``, or the provider's open transaction, or None."""


#: Job attempts a delivery keeps for workers that die mid-request (see _deliver).
_CRASH_RETRIES = 5


class WebhookService:
    """``app.webhooks``: register endpoints and send them events.

    Creating it registers the delivery job ``soniq.webhooks.deliver`` on the app (a
    worker of the app creates it too, so every worker serves deliveries). PostgreSQL
    only: on SQLite and memory apps the calls raise ``SONIQ_NOT_SUPPORTED_BY_BACKEND``.
    """

    def __init__(
        self, app: WebhookHost, write_jobs: WriteJobs, transport: WebhookTransport | None = None
    ) -> None:
        self._app = app
        self._store = app.store
        self._write_jobs = write_jobs
        #: What requests go through; replace it to deliver another way (or in tests).
        self.transport: WebhookTransport = transport or HTTPTransport()
        if DELIVER_TASK not in app.registry:
            app.registry.add(
                build_spec(
                    self._deliver,
                    name=DELIVER_TASK,
                    # Attempts are counted on the delivery row (a retry is a Snooze,
                    # which spends none). These job attempts only absorb workers that
                    # die mid-request, which stale recovery would otherwise
                    # dead-letter; a final failure is not retryable and buries at once.
                    retries=_CRASH_RETRIES,
                    priority=app.settings.priority,
                    queue=app.settings.webhook_queue,
                    unique=False,
                    retry_delay=0,
                    retry_backoff=False,
                    retry_max_delay=None,
                    # Above the longest request timeout an endpoint may have, so that
                    # SONIQ_JOB_TIMEOUT never cuts a request short.
                    timeout=_MAX_REQUEST_TIMEOUT + 60.0,
                    args_model=None,
                    name_pattern=DEFAULT_TASK_NAME_PATTERN,
                )
            )

    def _postgres_only(self, call: str) -> None:
        kind = storage_kind(self._app.settings)
        if kind != "postgres":
            raise BackendUnsupportedError(
                f"app.webhooks.{call}() needs the PostgreSQL backend; this app keeps its "
                f"jobs in {kind}, which has no webhook tables. Use a PostgreSQL database "
                "URL for apps that send webhooks.",
                backend=kind,
            )

    # -- endpoints ------------------------------------------------------------------

    async def register(
        self,
        url: str,
        events: Iterable[str | WebhookEvent] | None = None,
        secret: str | None = None,
        *,
        active: bool = True,
        max_retries: int = 3,
        timeout_seconds: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """Add an endpoint; return its id.

        ``events`` lists the event names it takes (None: every event). With
        ``secret`` every request is signed (see :mod:`soniq.webhooks.signing`); the
        secret is stored Fernet-encrypted when SONIQ_WEBHOOK_SECRET_KEY is set, as
        given otherwise. ``max_retries`` attempts follow a failed first one;
        ``timeout_seconds`` defaults to SONIQ_WEBHOOK_TIMEOUT; ``headers`` are sent
        with every request. An inactive endpoint receives nothing.
        """
        self._postgres_only("register")
        params = {
            "id": str(uuid.uuid4()),
            "url": _check_url(url),
            "events": None if events is None else json.dumps(_check_events(events)),
            "secret": None,
            "active": _check_bool("active", active),
            "max_retries": _check_retries(max_retries),
            "timeout_seconds": _check_timeout(
                self._app.settings.webhook_timeout if timeout_seconds is None else timeout_seconds
            ),
            "headers": json.dumps(_check_headers(headers)),
        }
        if secret is not None:
            if not isinstance(secret, str) or not secret:
                raise SoniqValueError(
                    INVALID_WEBHOOK,
                    f"secret= must be a non-empty string or None, got {type(secret).__name__}.",
                )
            params["secret"] = seal(secret, self._app.settings.webhook_secret_key)
        await self._store.webhooks.add_endpoint(params)
        return str(params["id"])

    async def unregister(self, endpoint_id: str) -> bool:
        """Remove an endpoint; True if there was one. Its deliveries go with it: those
        not made yet are dropped (their jobs end without sending anything)."""
        self._postgres_only("unregister")
        return await self._store.webhooks.remove_endpoint(_check_id(endpoint_id))

    async def list(self) -> builtins.list[WebhookEndpoint]:
        """Every endpoint, oldest first."""
        self._postgres_only("list")
        return [WebhookEndpoint.from_record(r) for r in await self._store.webhooks.endpoints()]

    async def get(self, endpoint_id: str) -> WebhookEndpoint | None:
        """One endpoint, or None."""
        self._postgres_only("get")
        row = await self._store.webhooks.endpoint(_check_id(endpoint_id))
        return None if row is None else WebhookEndpoint.from_record(row)

    # -- sending --------------------------------------------------------------------

    async def send(
        self,
        event: str | WebhookEvent,
        data: Any,
        metadata: Mapping[str, Any] | None = None,
        *,
        connection: Any = None,
    ) -> builtins.list[str]:
        """Queue ``event`` for every active endpoint that takes it; the delivery ids.

        The body is the JSON object ``{"event_id", "event", "data", "metadata",
        "sent_at"}``, the same for every endpoint. With ``connection=`` (as for
        ``app.enqueue``) the deliveries are written in that open transaction and exist
        only if it commits. Each is made by a job, so it survives restarts.
        """
        self._postgres_only("send")
        name = _check_event(event)
        if metadata is not None and not isinstance(metadata, Mapping):
            raise SoniqValueError(
                INVALID_WEBHOOK,
                f"metadata= must be a mapping or None, got {type(metadata).__name__}.",
            )
        body = _body(name, data, metadata)
        conn = self._app._current_connection(connection)
        if conn is not None:
            try:
                return await self._create(async_adapter(conn), name, body)
            except Exception as exc:
                if sqlstate(exc) != "42P01":  # undefined_table
                    raise
                raise SoniqError(
                    SCHEMA_MISSING,
                    "The webhook tables are not in the database behind connection=. Run "
                    "`soniq setup` against it first (migration 0008_webhooks).",
                ) from exc
        await self._app.ensure_initialized()
        async with self._store.transaction() as tx:
            return await self._create(tx, name, body)

    async def send_webhook(
        self,
        event: str | WebhookEvent,
        data: Any,
        metadata: Mapping[str, Any] | None = None,
        *,
        connection: Any = None,
    ) -> builtins.list[str]:
        """The original Soniq's name for :meth:`send`."""
        return await self.send(event, data, metadata, connection=connection)

    async def start(self) -> None:
        """Nothing to do: deliveries are jobs, made by the app's workers. Kept for code
        written against the original Soniq, whose service had to be started."""

    async def stop(self) -> None:
        """Nothing to do (see :meth:`start`)."""

    async def _create(self, tx: AsyncAdapter, event: str, body: str) -> builtins.list[str]:
        targets = await self._store.webhooks.targets(tx, event, None)
        if not targets:
            return []
        ids = [str(uuid.uuid4()) for _ in targets]
        job_ids = await self._write_jobs(tx, DELIVER_TASK, [{"delivery_id": i} for i in ids])
        rows = [
            (i, endpoint_id, j, max_retries + 1)
            for i, (endpoint_id, max_retries), j in zip(ids, targets, job_ids, strict=True)
        ]
        await self._store.webhooks.create_deliveries(tx, event, body, rows)
        return ids

    # -- deliveries -----------------------------------------------------------------

    async def delivery(self, delivery_id: str) -> dict[str, Any] | None:
        """One delivery's record (the columns of ``soniq_webhook_deliveries``), or None."""
        self._postgres_only("delivery")
        return await self._store.webhooks.delivery(_check_id(delivery_id))

    async def deliveries(
        self, *, endpoint_id: str | None = None, status: str | None = None, limit: int = 100
    ) -> builtins.list[dict[str, Any]]:
        """Delivery records, newest first: of one endpoint, of one status (pending,
        delivered or failed), or all; at most ``limit`` (1 to 1000)."""
        self._postgres_only("deliveries")
        if status is not None and status not in _STATUSES:
            raise SoniqValueError(
                INVALID_WEBHOOK,
                f"status= must be one of {', '.join(_STATUSES)} or None, got {status!r}.",
            )
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise SoniqValueError(INVALID_WEBHOOK, f"limit= must be 1 to 1000, got {limit!r}.")
        key = None if endpoint_id is None else _check_id(endpoint_id)
        return await self._store.webhooks.deliveries(key, status, limit)

    async def get_delivery_stats(self, hours: float = 24) -> dict[str, Any]:
        """Deliveries created in the last ``hours``: ``total``, ``delivered``, ``failed``,
        ``pending``, ``success_rate`` (delivered over finished, or None) and
        ``avg_duration_ms`` of the delivered ones (or None)."""
        self._postgres_only("get_delivery_stats")
        if isinstance(hours, bool) or not isinstance(hours, (int, float)) or not hours > 0:
            raise SoniqValueError(
                INVALID_WEBHOOK, f"hours= must be a positive number, got {hours!r}."
            )
        row = await self._store.webhooks.stats(float(hours) * 3600.0)
        stats = {k: int(row[k]) for k in ("total", "delivered", "failed", "pending")}
        finished = stats["delivered"] + stats["failed"]
        avg = row["avg_duration_ms"]
        return {
            **stats,
            "success_rate": stats["delivered"] / finished if finished else None,
            "avg_duration_ms": None if avg is None else float(avg),
            "hours": hours,
        }

    # -- the delivery job -----------------------------------------------------------

    async def _deliver(self, delivery_id: str, ctx: JobContext) -> dict[str, Any]:
        """The handler of ``soniq.webhooks.deliver``: one attempt at one delivery.

        Returns the attempt's :class:`WebhookResult` on a 2xx; raises ``Snooze`` to try
        again later, or :class:`WebhookDeliveryError` when it will not be tried again.
        A replayed dead letter of a failed delivery sends it again, with fresh attempts.
        """
        webhooks = self._store.webhooks
        row = await webhooks.begin_attempt(delivery_id, ctx.job_id)
        if row is None:
            known = await webhooks.delivery(delivery_id)
            why = "its endpoint was unregistered" if known is None else f"it is {known['status']}"
            return {"delivery_id": delivery_id, "skipped": f"not sent: {why}"}
        attempt, limit = int(row["attempts"]), int(row["max_attempts"])
        endpoint_id, url = str(row["endpoint_id"]), str(row["url"])
        if attempt > limit:  # attempts spent by workers that died mid-request
            spent = f"all {limit} attempts were used up (workers stopped mid-request)"
            await webhooks.record(delivery_id, "failed", last_error=spent)
            raise WebhookDeliveryError(f"Webhook to {url} not delivered: {spent}.")
        try:
            secret = unseal(row["secret"], self._app.settings.webhook_secret_key)
        except SecretUnreadable as exc:
            await webhooks.record(delivery_id, "failed", last_error=str(exc))
            raise WebhookDeliveryError(f"Webhook to {url} not sent: {exc}.") from None
        body = str(row["body"])
        stamp = int(time.time())
        headers = {
            **(row["headers"] or {}),
            "Content-Type": "application/json",
            "User-Agent": f"soniq-webhooks/{__version__}",
            "X-Webhook-Event": str(row["event"]),
            "X-Webhook-Delivery": delivery_id,
            "X-Webhook-Timestamp": str(stamp),
        }
        if secret is not None:
            headers["X-Webhook-Signature"] = sign_webhook(body, secret, stamp)
        started = time.perf_counter()
        try:
            response = await self.transport.post(
                url, body.encode("utf-8"), headers, float(row["timeout_seconds"])
            )
        except WebhookTransportError as exc:
            duration = (time.perf_counter() - started) * 1000.0
            status, text, wait = None, None, None
            error: str | None = str(exc)
        else:
            duration = (time.perf_counter() - started) * 1000.0
            status, text = response.status_code, response.body
            error = None if is_success(status) else f"HTTP {status}"
            wait = retry_after(response.headers.get("retry-after"))
        result = WebhookResult(
            delivery_id=delivery_id,
            endpoint_id=endpoint_id,
            event=str(row["event"]),
            url=url,
            attempt=attempt,
            delivered=error is None,
            status_code=status,
            body=text,
            duration_ms=round(duration, 3),
            error=error,
        )
        outcome = {
            "response_status": status,
            "response_body": text,
            "duration_ms": result.duration_ms,
            "last_error": error,
        }
        if error is None:
            await webhooks.record(delivery_id, "delivered", **outcome)
            return result.to_dict()
        if status is not None and not is_retryable(status):
            await webhooks.record(delivery_id, "failed", **outcome)
            raise WebhookDeliveryError(
                f"Webhook to {url} refused with HTTP {status}; not retried (only 5xx, 429 "
                "and connection errors are). Fix the endpoint or the request, then send "
                "the event again.",
                status_code=status,
                delivery_id=delivery_id,
            )
        if attempt >= limit:
            await webhooks.record(delivery_id, "failed", **outcome)
            raise WebhookDeliveryError(
                f"Webhook to {url} failed all {limit} attempts; the last: {error}.",
                status_code=status,
                delivery_id=delivery_id,
            )
        settings = self._app.settings
        if wait is None:
            wait = backoff(attempt, settings.webhook_retry_delay, settings.webhook_retry_max_delay)
        await webhooks.record(delivery_id, "pending", retry_in=wait, **outcome)
        logger.info(
            "webhook %s to %s failed (attempt %d of %d): %s; retrying in %.3gs",
            delivery_id,
            url,
            attempt,
            limit,
            error,
            wait,
        )
        # Back to the queue without spending the job's attempt: the delivery row counts.
        raise Snooze(wait)


def _check_id(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SoniqValueError(INVALID_WEBHOOK, f"An id must be a non-empty string, got {value!r}.")
    return value.strip()


def _check_url(url: object) -> str:
    if not isinstance(url, str):
        raise SoniqValueError(INVALID_WEBHOOK, f"url must be a string, got {type(url).__name__}.")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SoniqValueError(
            INVALID_WEBHOOK,
            f"url must be an absolute http:// or https:// URL, got {url!r}.",
            url=url,
        )
    return url.strip()


def _check_event(event: object) -> str:
    name = event.value if isinstance(event, WebhookEvent) else event
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise SoniqValueError(
            INVALID_WEBHOOK,
            f"An event name must be a non-empty string of at most 200 characters (such "
            f"as 'job.completed' or a WebhookEvent), got {event!r}.",
        )
    return name.strip()


def _check_events(events: object) -> builtins.list[str]:
    if isinstance(events, (str, bytes)) or not isinstance(events, Iterable):
        raise SoniqValueError(
            INVALID_WEBHOOK,
            f"events= takes a list of event names, or None for every event; got {events!r}."
            + (f" Write events=[{events!r}]." if isinstance(events, str) else ""),
        )
    names = builtins.list(dict.fromkeys(_check_event(e) for e in events))
    if not names:
        raise SoniqValueError(
            INVALID_WEBHOOK,
            "events=[] would receive nothing. Pass None for every event, or name some.",
        )
    return names


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise SoniqValueError(INVALID_WEBHOOK, f"{name}= must be True or False, got {value!r}.")
    return value


def _check_retries(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise SoniqValueError(
            INVALID_WEBHOOK, f"max_retries= must be an int from 0 to 100, got {value!r}."
        )
    return value


def _check_timeout(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 3600:
        raise SoniqValueError(
            INVALID_WEBHOOK,
            f"timeout_seconds= must be a number of seconds above 0 and at most 3600, "
            f"got {value!r}.",
        )
    return float(value)


def _check_headers(headers: object) -> dict[str, str]:
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise SoniqValueError(
            INVALID_WEBHOOK, f"headers= must be a mapping of str to str, got {headers!r}."
        )
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str) or not name.strip():
            raise SoniqValueError(
                INVALID_WEBHOOK, f"headers= must map str to str, got {name!r}: {value!r}."
            )
        if any(c in name + value for c in "\r\n\0") or ":" in name:
            raise SoniqValueError(
                INVALID_WEBHOOK, f"Header {name!r} has a character HTTP headers can't carry."
            )
        if name.strip().lower() in RESERVED_HEADERS:
            raise SoniqValueError(
                INVALID_WEBHOOK,
                f"Header {name!r} is set by Soniq on every request; pick another name.",
            )
        checked[name.strip()] = value
    return checked


def _body(event: str, data: Any, metadata: Mapping[str, Any] | None) -> str:
    payload = {
        "event_id": str(uuid.uuid4()),
        "event": event,
        "data": data,
        "metadata": dict(metadata) if metadata is not None else {},
        "sent_at": datetime.now(timezone.utc).isoformat(),
    }
    try:
        return json.dumps(payload, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ArgsNotSerializableError(
            f"The webhook's data or metadata can't be sent as JSON ({exc}). Pass dicts, "
            "lists, strings, numbers, booleans and None; convert datetimes, UUIDs and "
            "the like to strings first.",
        ) from None


__all__ = ["RESERVED_HEADERS", "WebhookHost", "WebhookService"]
