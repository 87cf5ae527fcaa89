"""Job ids: UUID version 7 strings.

Version 7 starts with the creation time in milliseconds, so new ids sort after old
ones. Inserts then land at the right edge of the primary-key index instead of at
random pages all over it, which keeps enqueue fast as ``soniq_jobs`` grows. Within a
process, each id also sorts after every id made before it (a sequence number follows
the millisecond), so ``list_jobs`` can page newest first by id alone; across processes
the order holds to the millisecond.
"""

from __future__ import annotations

import os
import random
import threading
import time

_VERSION = 0x7 << 76
_VARIANT = 0x2 << 62

# After the 48-bit millisecond stamp: a 28-bit sequence number split around the version
# and variant bits (rand_a takes its 12 high bits, rand_b's top 16 its low bits), then
# 46 random bits.
_SEQ_LIMIT = 1 << 28
_RANDOM_BITS = 46

# The millisecond and sequence number of the last id made in this process: every new id
# comes after it, so ids made one after the other sort in that order, also within one
# millisecond, also if the clock steps back.
_last = (0, 0)
_lock = threading.Lock()
_random_bits = random.getrandbits


def _reserve(count: int) -> tuple[int, int]:
    """The millisecond and first sequence number of ``count`` ids after all made so far."""
    global _last
    now = time.time_ns() // 1_000_000
    with _lock:
        ms, seq = _last
        if now > ms:
            ms, seq = now, 0
        else:
            seq += 1
        if seq + count > _SEQ_LIMIT and seq:  # this millisecond's sequence is used up
            ms, seq = ms + 1, 0
        _last = (ms, min(seq + count, _SEQ_LIMIT) - 1)
    return ms, seq


def _format(ms: int, seq: int, rand: int) -> str:
    sequence = (seq >> 16) << 64 | (seq & 0xFFFF) << _RANDOM_BITS
    h = f"{ms << 80 | _VERSION | _VARIANT | sequence | rand:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_job_id() -> str:
    """A fresh UUIDv7 as a canonical lowercase string, after every id made before it."""
    global _last
    now = time.time_ns() // 1_000_000
    with _lock:  # _reserve(1), inlined: this runs on every enqueue
        ms, seq = _last
        if now > ms:
            ms, seq = now, 0
        elif seq + 1 < _SEQ_LIMIT:
            seq += 1
        else:
            ms, seq = ms + 1, 0
        _last = (ms, seq)
    # random's generator, reseeded in a forked child, is enough for uniqueness across
    # processes and costs a fraction of a urandom system call.
    return _format(ms, seq, _random_bits(_RANDOM_BITS))


def new_job_ids(count: int) -> list[str]:
    """``count`` fresh UUIDv7 strings for one bulk enqueue, increasing in list order.

    They share one clock reading, and a sequence number follows it (RFC 9562's fixed
    counter), so the jobs of one ``enqueue_many`` sort (and are claimed) in the order
    given, and rows written together sit together on disk. Past 2**28 ids in one call
    the order wraps; the random bits keep the ids unique.
    """
    ms, first = _reserve(count)
    noise = os.urandom(6 * count)
    return [
        _format(ms, (first + n) % _SEQ_LIMIT, int.from_bytes(noise[6 * n : 6 * n + 6], "big") >> 2)
        for n in range(count)
    ]
