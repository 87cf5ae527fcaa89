"""A plain Soniq job registered on the default app, enqueued by the transaction tests."""

from __future__ import annotations

import soniq_sync


@soniq_sync.job(name="testapp.record", queue="plain")
def record(ref: str) -> str:
    return ref
