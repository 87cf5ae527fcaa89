"""A handler's return value as the JSON text a ``jsonb`` column accepts."""

from __future__ import annotations

import json
import re
from typing import Any

# A JSON escape of NUL: \u0000 after an even number of backslashes (itself unescaped).
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def result_json(value: Any) -> str | None:
    """``value`` as compact JSON, or None if PostgreSQL cannot store it as ``jsonb``
    (not JSON: NaN, sets, objects ...; or text with a NUL character, which jsonb
    refuses anywhere, so that one such result would fail its whole ack batch)."""
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        return None
    if "\\u0000" in text and _JSON_NUL.search(text):
        return None
    return text
