"""Completing a job on a caller's connection, inside the caller's transaction.

What ``ctx.complete(conn)`` runs through the connection's adapter (see
``soniq.worker.completion``, which turns the outcomes below into its errors).
``soniq_sync/storage/completion.py`` is generated from this file.
"""

from __future__ import annotations

from typing import Literal

from soniq.adapters.base import AsyncAdapter
from soniq.adapters.sqlstate import sqlstate

#: What :func:`complete_attempt` found: ``done`` (this call wrote it), ``again`` (an
#: earlier call did, on this same transaction), ``twice`` (an earlier call did, on
#: another), ``lost`` (the attempt no longer holds its row), ``elsewhere`` (the
#: connection points at another database).
Completed = Literal["done", "again", "twice", "lost", "elsewhere"]

#: SQLSTATE of a missing table: the connection's database has no Soniq schema.
_UNDEFINED_TABLE = "42P01"


async def complete_attempt(
    db: AsyncAdapter,
    job_id: str,
    attempt: int,
    instance: str,
    result: str | None,
    progress: str | None,
    done_in: str | None,
) -> tuple[Completed, str | None]:
    """Mark the attempt done in ``db``'s open transaction, with its ``result`` and its
    last unwritten ``progress`` (JSON texts, or None), unless an earlier call did
    (``done_in``: that call's transaction). What happened, and the id of the
    transaction that completed the attempt."""
    if done_in is not None:
        return ("again", done_in) if await _transaction_id(db) == done_in else ("twice", None)
    params = {
        "id": job_id,
        "attempt": attempt,
        "instance": instance,
        "result": result,
        "progress": progress,
    }
    try:
        rows = await db.fetch(db.dialect.queries["complete_job_in_tx"], params)
        if rows:
            return "done", str(rows[0][0])
        return ("lost", None) if await _same_instance(db, instance) else ("elsewhere", None)
    except Exception as exc:
        if sqlstate(exc) == _UNDEFINED_TABLE:
            return "elsewhere", None
        raise


async def _same_instance(db: AsyncAdapter, instance: str) -> bool:
    """Whether ``db`` points at the database whose ``soniq_instance`` id is ``instance``."""
    rows = await db.fetch(db.dialect.queries["instance_matches"], {"instance": instance})
    return bool(rows and rows[0][0])


async def _transaction_id(db: AsyncAdapter) -> str | None:
    """The id of ``db``'s open transaction, or None if it has not written yet."""
    rows = await db.fetch(db.dialect.queries["current_transaction"], {})
    return None if not rows or rows[0][0] is None else str(rows[0][0])
