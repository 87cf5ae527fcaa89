"""The shop's background jobs. The worker imports this module:

    SONIQ_JOBS_MODULES=jobs soniq worker

``soniq_sync.job()`` registers on the module-level default app, which reads
SONIQ_DATABASE_URL. ``soniq worker`` serves jobs registered that way like any other.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import soniq_sync
from soniq import JobContext
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session

from models import Order, sqlalchemy_url


@functools.cache
def engine() -> Engine:
    """The worker's own engine, made on first use: it needs no Flask app."""
    return create_engine(sqlalchemy_url(os.environ["SONIQ_DATABASE_URL"]))


@soniq_sync.job(name="shop.confirm_order", queue="orders", retries=3)
def confirm_order(order_id: int, ctx: JobContext) -> dict[str, Any]:
    """Confirm an order. A real shop would email the customer here, too.

    The job completes in the same transaction as the flag it sets
    (``ctx.complete_sync``), so the order is confirmed exactly when the job is done:
    a crash in between can leave neither half. A plain ``def`` handler runs in one of
    the worker's threads, so blocking database calls are fine.
    """
    with Session(engine()) as session, session.begin():
        ctx.complete_sync(session, result={"confirmed": order_id})  # first: the fence
        order = session.get(Order, order_id)
        if order is None:
            # Cannot happen for a job enqueued with the order: they commit together.
            raise LookupError(f"order {order_id} does not exist")
        order.confirmed = True
    return {"confirmed": order_id}
