"""Signed webhook delivery: ``app.webhooks`` and what receivers need.

Install the extra on the apps that send and the workers that deliver:
``pip install 'soniq[webhooks]'`` (httpx for the requests, cryptography to encrypt
secrets). Receivers need only :func:`verify_webhook_signature`, which is stdlib only.
See docs/guides/webhooks.md.
"""

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
from soniq.webhooks.service import WebhookService
from soniq.webhooks.signing import sign_webhook, verify_webhook_signature
from soniq.webhooks.transport import HTTPTransport, WebhookTransport

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
