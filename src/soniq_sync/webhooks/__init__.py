"""Signed webhook delivery for the blocking app: ``soniq_sync`` twins of
:mod:`soniq.webhooks` (the service and the transport block; the rest is shared)."""

from __future__ import annotations

from soniq.errors import WebhookDeliveryError
from soniq.webhooks.models import (
    DELIVER_TASK,
    WebhookEndpoint,
    WebhookEvent,
    WebhookResponse,
    WebhookResult,
    WebhookTransportError,
)
from soniq.webhooks.signing import sign_webhook, verify_webhook_signature
from soniq_sync.webhooks.service import WebhookService
from soniq_sync.webhooks.transport import HTTPTransport, WebhookTransport

__all__ = [
    "DELIVER_TASK",
    "HTTPTransport",
    "WebhookDeliveryError",
    "WebhookEndpoint",
    "WebhookEvent",
    "WebhookResponse",
    "WebhookResult",
    "WebhookService",
    "WebhookTransport",
    "WebhookTransportError",
    "sign_webhook",
    "verify_webhook_signature",
]
