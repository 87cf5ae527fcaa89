"""Sending one webhook request: the ``WebhookTransport`` protocol and its httpx
implementation, ``HTTPTransport`` (the ``soniq[webhooks]`` extra).
``soniq_sync/webhooks/transport.py`` is generated from this file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from soniq.errors import WEBHOOKS_UNAVAILABLE, SoniqError
from soniq.webhooks.models import BODY_LIMIT, WebhookResponse, WebhookTransportError


class WebhookTransport(Protocol):
    """Sends one POST; what ``app.webhooks`` delivers through (``transport=``)."""

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> WebhookResponse:
        """POST ``body`` with ``headers``; the response, whatever its status.

        Raise :class:`WebhookTransportError` when no response came within ``timeout``
        seconds or the connection failed.
        """


class HTTPTransport:
    """A :class:`WebhookTransport` over httpx: no redirects followed, the response
    body read up to ``BODY_LIMIT`` characters, ``timeout`` applied to connecting and
    to each read and write. A client per request, so it works from any event loop
    or thread."""

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> WebhookResponse:
        """POST ``body``; see :class:`WebhookTransport`."""
        try:
            import httpx
        except ImportError:
            raise SoniqError(
                WEBHOOKS_UNAVAILABLE,
                "Webhook delivery needs httpx. Run `pip install 'soniq[webhooks]'` on the workers.",
            ) from None
        try:
            async with (
                httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client,
                client.stream("POST", url, content=body, headers=dict(headers)) as resp,
            ):
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.aiter_bytes():
                    chunks.append(chunk)
                    size += len(chunk)
                    if size >= BODY_LIMIT * 4:  # enough bytes for BODY_LIMIT characters
                        break
                text = b"".join(chunks).decode(resp.encoding or "utf-8", errors="replace")
                return WebhookResponse(
                    resp.status_code,
                    text[:BODY_LIMIT],
                    {k.lower(): v for k, v in resp.headers.items()},
                )
        except httpx.TimeoutException as exc:
            raise WebhookTransportError(
                f"timed out after {timeout:g}s ({type(exc).__name__})"
            ) from exc
        except httpx.TransportError as exc:
            raise WebhookTransportError(f"{type(exc).__name__}: {exc}") from exc
