"""The original Soniq's import path for webhooks; everything is in :mod:`soniq.webhooks`."""

from __future__ import annotations

from soniq.webhooks import (
    HTTPTransport,
    WebhookEndpoint,
    WebhookEvent,
    WebhookResult,
    WebhookService,
    WebhookTransport,
    verify_webhook_signature,
)

__all__ = [
    "HTTPTransport",
    "WebhookEndpoint",
    "WebhookEvent",
    "WebhookResult",
    "WebhookService",
    "WebhookTransport",
    "verify_webhook_signature",
]
