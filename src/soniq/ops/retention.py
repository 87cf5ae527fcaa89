"""Retention: how old a finished job must be before it may go, and deleting it in batches.

``app.prune()`` and the workers' sweep (``soniq.ops.pruning``) share these rules.
``soniq_sync/retention.py`` is generated from this file by ``tools/async_to_sync.py``.
"""

from __future__ import annotations

import logging
import math
from datetime import timedelta
from typing import TYPE_CHECKING

from soniq.errors import INVALID_DURATION, RETENTION_OFF, SoniqError
from soniq.settings import SoniqSettings

if TYPE_CHECKING:
    from soniq.storage.store import Store

logger = logging.getLogger("soniq.retention")

#: Rows deleted per statement. Each batch is its own short transaction, so a prune
#: never holds many row locks or one long snapshot, and vacuum can follow behind it.
BATCH_SIZE = 1000

#: Ages are capped at this many seconds (about 31 years) so that they always fit in a
#: PostgreSQL interval; nothing in a job table is that old.
LONGEST_AGE = 1e9


def duration_seconds(value: object, what: str) -> float:
    """``value`` (seconds, or a ``timedelta``) as seconds >= 0, or SONIQ_INVALID_DURATION."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise SoniqError(
            INVALID_DURATION,
            f"{what} must be a number of seconds or a timedelta, got {value!r}.",
        )
    if not 0 <= seconds < math.inf:
        raise SoniqError(
            INVALID_DURATION,
            f"{what} must be 0 or more seconds and finite, got {value!r}.",
        )
    return seconds


def prune_age(settings: SoniqSettings, older_than: object = None) -> float:
    """How long after finishing a row may be deleted, in seconds.

    ``older_than`` if given, else SONIQ_FINISHED_JOB_RETENTION; never less than
    SONIQ_RESULT_TTL, so that a result is not deleted while it is still readable.
    """
    if older_than is None:
        if settings.finished_job_retention is None:
            raise SoniqError(
                RETENTION_OFF,
                "Retention is off (SONIQ_FINISHED_JOB_RETENTION=off), so there is no age "
                "to prune by. Pass older_than= (soniq prune --older-than 2h), or set "
                "SONIQ_FINISHED_JOB_RETENTION to a number of seconds.",
            )
        age = settings.finished_job_retention
    else:
        age = duration_seconds(older_than, "older_than")
    return min(max(age, settings.result_ttl), LONGEST_AGE)


def result_ttl(settings: SoniqSettings) -> float:
    """SONIQ_RESULT_TTL as the queries take it."""
    return min(settings.result_ttl, LONGEST_AGE)


async def prune_finished(store: Store, age: float, batch_size: int = BATCH_SIZE) -> int:
    """Delete, batch by batch, every finished row older than ``age``; return how many."""
    cutoff = await store.jobs.prune_cutoff(age)
    total = 0
    while True:
        deleted = await store.jobs.prune_batch(cutoff, batch_size, exclusive=False) or 0
        total += deleted
        if deleted < batch_size:
            break
    logger.debug(
        "pruned %d finished job(s) older than %gs",
        total,
        age,
        extra={"deleted": total, "older_than": age},
    )
    return total
