"""Job ids: UUID version 7 strings.

Version 7 starts with the creation time in milliseconds, so new ids sort after old
ones. Inserts then land at the right edge of the primary-key index instead of at
random pages all over it, which keeps enqueue fast as ``soniq_jobs`` grows.
"""

from __future__ import annotations

import os
import time

_VERSION = 0x7 << 76
_VARIANT = 0x2 << 62
_CLEAR = ~((0xF << 76) | (0x3 << 62))


def new_job_id() -> str:
    """A fresh UUIDv7 as a canonical lowercase string."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    h = f"{(value & _CLEAR) | _VERSION | _VARIANT:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_job_ids(count: int) -> list[str]:
    """``count`` fresh UUIDv7 strings sharing one clock reading (for bulk enqueue)."""
    stamp = (time.time_ns() // 1_000_000) << 80
    noise = os.urandom(10 * count)
    ids = []
    for i in range(0, 10 * count, 10):
        value = stamp | int.from_bytes(noise[i : i + 10], "big")
        h = f"{(value & _CLEAR) | _VERSION | _VARIANT:032x}"
        ids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return ids
