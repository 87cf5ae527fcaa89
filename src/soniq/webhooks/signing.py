"""The signature on every webhook request, and the check receivers run on it.

The scheme: ``X-Webhook-Signature: sha256=<hex>``, where ``<hex>`` is the lowercase
hex HMAC-SHA256, keyed with the endpoint's secret (UTF-8), of the bytes
``f"{timestamp}.{body}"``: the ``X-Webhook-Timestamp`` header (whole Unix seconds, as
sent), a dot, then the raw request body exactly as received. Signing the timestamp
with the body lets a receiver refuse replays of an old request.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Final

from soniq.errors import INVALID_ARGUMENT, SoniqError

#: The prefix of the signature header's value.
PREFIX = "sha256="
#: How old (or how far in the future) a timestamp may be by default, in seconds.
DEFAULT_TOLERANCE = 300.0


class _Missing:
    """The default of ``timestamp=``: not passed at all (unlike None, a missing header)."""


_MISSING: Final = _Missing()


def _bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def sign_webhook(body: str | bytes, secret: str | bytes, timestamp: int | str) -> str:
    """The ``X-Webhook-Signature`` value for ``body`` sent at ``timestamp``:
    ``sha256=`` and the hex HMAC-SHA256 of ``f"{timestamp}.{body}"`` under ``secret``."""
    message = str(timestamp).encode("ascii") + b"." + _bytes(body)
    return PREFIX + hmac.new(_bytes(secret), message, hashlib.sha256).hexdigest()


def verify_webhook_signature(
    payload: str | bytes,
    signature: str | None,
    secret: str | bytes,
    *,
    timestamp: int | str | _Missing | None = _MISSING,
    tolerance: float | None = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> bool:
    """Whether ``signature`` (the ``X-Webhook-Signature`` header) signs ``payload`` (the
    raw request body) sent at ``timestamp`` (the ``X-Webhook-Timestamp`` header).

    False for a missing or malformed signature or timestamp, for a timestamp more than
    ``tolerance`` seconds away from ``now`` (default: the clock; ``tolerance=None``
    skips that check, which lets replays through), and for a signature made with
    another secret or over other bytes. The comparison takes constant time. Pass the
    body as received, before any JSON parsing: re-encoding changes the bytes.

    ``timestamp=`` must be passed (the original Soniq's three-argument call does not
    say which timestamp was signed): leaving it out raises ``SONIQ_INVALID_ARGUMENT``.
    """
    if isinstance(timestamp, _Missing):
        raise SoniqError(
            INVALID_ARGUMENT,
            "verify_webhook_signature() needs timestamp=: the signature covers the "
            "X-Webhook-Timestamp header too. Pass "
            "timestamp=request.headers.get('X-Webhook-Timestamp').",
        )
    if not signature or timestamp is None:
        return False
    stamp = str(timestamp).strip()
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        return False
    if tolerance is not None:
        clock = time.time() if now is None else now
        if abs(clock - int(stamp)) > tolerance:
            return False
    expected = sign_webhook(payload, secret, stamp)
    return hmac.compare_digest(expected.encode("ascii"), signature.strip().encode("utf-8"))
