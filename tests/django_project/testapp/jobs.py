"""Soniq jobs registered on the default app: a plain one for the transaction tests,
and two that commit their done with their Django writes (test_complete_in_tx)."""

from __future__ import annotations

import soniq_sync
from soniq import JobContext


@soniq_sync.job(name="testapp.record", queue="plain")
def record(ref: str) -> str:
    return ref


@soniq_sync.job(name="testapp.charge_atomic", transactional="django", retries=0)
def charge_atomic(ref: str, ctx: JobContext) -> str:
    """Runs in transaction.atomic(): the order and the job's done commit together."""
    from tests.django_project.testapp.models import Order

    Order.objects.create(ref=ref)
    if ref.startswith("boom"):
        raise RuntimeError("rolled back with the order")
    return ref


@soniq_sync.job(name="testapp.charge_explicit", retries=0)
def charge_explicit(ref: str, ctx: JobContext) -> dict[str, str]:
    """Completes itself on Django's connection, inside its own atomic block."""
    from django.db import connection, transaction

    from tests.django_project.testapp.models import Order

    with transaction.atomic():
        ctx.complete_sync(connection, result={"ref": ref})
        Order.objects.create(ref=ref)
        if ref.startswith("boom"):
            raise RuntimeError("rolled back with the completion")
    return {"ignored": ref}  # the completion's result is the job's
