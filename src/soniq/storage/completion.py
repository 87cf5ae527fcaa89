"""Completing a job on a caller's connection, inside the caller's transaction.

What ``ctx.complete(conn)`` runs through the connection's adapter (see
``soniq.worker.completion``), and the worker's look at the row afterwards.
``soniq_sync/storage/completion.py`` is generated from this file.
"""

from __future__ import annotations

from soniq.adapters.base import AsyncAdapter


async def complete_in_tx(
    db: AsyncAdapter,
    job_id: str,
    attempt: int,
    instance: str,
    result: str | None,
    progress: str | None = None,
) -> str | None:
    """Mark the attempt done in ``db``'s open transaction (with its last ``progress``,
    JSON text, if one is pending); that transaction's id, or None if no row matched
    (another database, or the attempt no longer holds it)."""
    params = {
        "id": job_id,
        "attempt": attempt,
        "instance": instance,
        "result": result,
        "progress": progress,
    }
    rows = await db.fetch(db.dialect.queries["complete_job_in_tx"], params)
    return str(rows[0][0]) if rows else None


async def same_instance(db: AsyncAdapter, instance: str) -> bool:
    """Whether ``db`` points at the database whose ``soniq_instance`` id is ``instance``."""
    rows = await db.fetch(db.dialect.queries["instance_matches"], {"instance": instance})
    return bool(rows and rows[0][0])


async def transaction_id(db: AsyncAdapter) -> str | None:
    """The id of ``db``'s open transaction, or None if it has not written yet."""
    rows = await db.fetch(db.dialect.queries["current_transaction"], {})
    return None if not rows or rows[0][0] is None else str(rows[0][0])
