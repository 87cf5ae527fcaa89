"""A handler's return value as the JSON text a ``jsonb`` column accepts."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger("soniq.worker")

# A JSON escape of NUL: \u0000 after an even number of backslashes (itself unescaped).
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def has_nul_escape(text: str) -> bool:
    """Whether JSON ``text`` holds an escaped NUL character, which jsonb refuses."""
    return "\\u0000" in text and _JSON_NUL.search(text) is not None


def result_json(value: Any) -> str | None:
    """``value`` as compact JSON, or None if PostgreSQL cannot store it as ``jsonb``
    (not JSON: NaN, sets, objects ...; or text with a NUL character, which jsonb
    refuses anywhere, so that one such result would fail its whole ack batch)."""
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        return None
    return None if has_nul_escape(text) else text


def returned_json(result: Any, job_name: str, extra: Mapping[str, Any] | None = None) -> str | None:
    """A handler's return value as the result to store: its JSON text, or None (with a
    warning) when PostgreSQL cannot store it, so that the job still ends done."""
    if result is None:
        return None
    text = result_json(result)
    if text is None:
        logger.warning(
            "job %s returned a %s that PostgreSQL cannot store as JSON (not JSON, or "
            "text with a NUL character); its result is not stored",
            job_name,
            type(result).__name__,
            extra=extra,
        )
    return text
