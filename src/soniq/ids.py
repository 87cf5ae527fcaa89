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


# Bulk ids: a 28-bit sequence number split around the variant bits, then 46 random bits.
_SEQ_LIMIT = 1 << 28
_RANDOM_BITS = 46


def new_job_ids(count: int) -> list[str]:
    """``count`` fresh UUIDv7 strings for one bulk enqueue, increasing in list order.

    They share one clock reading, and a sequence number follows it (RFC 9562's fixed
    counter), so the jobs of one ``enqueue_many`` sort (and are claimed) in the order
    given, and rows written together sit together on disk.
    """
    stamp = (time.time_ns() // 1_000_000) << 80 | _VERSION | _VARIANT
    noise = os.urandom(6 * count)
    ids = []
    for n in range(count):
        # rand_a (12 bits) takes the sequence's high bits, rand_b's top 16 its low bits.
        # Past 2**28 jobs in one call the order wraps; the random bits keep ids unique.
        seq = n % _SEQ_LIMIT
        sequence = (seq >> 16) << 64 | (seq & 0xFFFF) << _RANDOM_BITS
        rand = int.from_bytes(noise[6 * n : 6 * n + 6], "big") >> 2
        h = f"{stamp | sequence | rand:032x}"
        ids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return ids
