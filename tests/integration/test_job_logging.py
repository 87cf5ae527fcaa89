"""Log records about a job carry job_id, job_name, queue and attempt: Soniq's and yours."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from soniq import Soniq
from soniq.observability.log_context import JobLogFilter

FIELDS = ("job_id", "job_name", "queue", "attempt")


class Collector(logging.Handler):
    """A handler with Soniq's filter, as the docs tell users to set theirs up."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(JobLogFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def about(self, text: str) -> list[dict[str, object]]:
        return [
            {k: getattr(r, k, None) for k in FIELDS} for r in self.records if text in r.getMessage()
        ]


@pytest.fixture
def collected() -> Iterator[Collector]:
    handler = Collector()
    loggers = [logging.getLogger("user.jobs"), logging.getLogger("soniq")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)


async def test_records_logged_inside_handlers_and_hooks_carry_the_job(
    app: Soniq, collected: Collector
) -> None:
    log = logging.getLogger("user.jobs")

    @app.job(name="log.async", queue="mail")
    async def async_job() -> None:
        log.info("inside the async handler")

    @app.job(name="log.sync", retries=1)
    def sync_job() -> None:
        log.info("inside the sync handler")
        raise RuntimeError("first attempt fails")

    @app.before_job
    def noisy_hook(job_name: str, job_id: str, attempt: int) -> None:
        raise ValueError("hook trouble")

    async_id = await app.enqueue(async_job)
    sync_id = await app.enqueue(sync_job)
    await app.run_worker(run_once=True, concurrency=1)
    log.info("after the worker")

    assert collected.about("inside the async handler") == [
        {"job_id": async_id, "job_name": "log.async", "queue": "mail", "attempt": 1}
    ]
    # The sync handler runs in a thread; it ran twice (the retry), each with its attempt.
    assert collected.about("inside the sync handler") == [
        {"job_id": sync_id, "job_name": "log.sync", "queue": "default", "attempt": n}
        for n in (1, 2)
    ]
    hook_failures = collected.about("Hook before_job failed")
    assert {(h["job_id"], h["attempt"]) for h in hook_failures} == {
        (async_id, 1),
        (sync_id, 1),
        (sync_id, 2),
    }
    assert collected.about("failed (attempt 1 of 2), retrying") == [
        {"job_id": sync_id, "job_name": "log.sync", "queue": "default", "attempt": 1}
    ]
    assert collected.about("after the worker") == [dict.fromkeys(FIELDS)]
