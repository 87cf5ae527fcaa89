"""Bad input on every backend: the same SoniqError code everywhere, and nothing written."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel

from soniq import Soniq, SoniqError, task_ref
from soniq.errors import (
    ARGS_CONFLICT,
    ARGS_NOT_SERIALIZABLE,
    INVALID_ARGUMENT,
    INVALID_DEDUP_KEY,
    INVALID_DURATION,
    INVALID_INTERVAL,
    INVALID_JOB_ID,
    INVALID_PRIORITY,
    INVALID_QUEUE,
    INVALID_SCHEDULE,
    INVALID_TARGET,
    NAIVE_DATETIME,
    TASK_ARGS_INVALID,
    UNKNOWN_TASK_NAME,
)


class Amount(BaseModel):
    cents: int


Call = Callable[[Soniq, Any], Awaitable[object]]
NAIVE = datetime(2030, 1, 1, 12, 0)

CASES: list[tuple[str, Call, str]] = [
    ("unknown task name", lambda app, f: app.enqueue("no.such.task", args={}), UNKNOWN_TASK_NAME),
    ("missing argument", lambda app, f: app.enqueue(f), TASK_ARGS_INVALID),
    ("unexpected argument", lambda app, f: app.enqueue(f, cents=1, extra=2), TASK_ARGS_INVALID),
    (
        "args fail the model",
        lambda app, f: app.enqueue(task_ref("pay.charge", Amount), args={"cents": "lots"}),
        TASK_ARGS_INVALID,
    ),
    ("args= with a function", lambda app, f: app.enqueue(f, args={"cents": 1}), ARGS_CONFLICT),
    (
        "kwargs with a name",
        lambda app, f: app.enqueue("pay.charge", cents=1),  # type: ignore[call-overload]
        ARGS_CONFLICT,
    ),
    (
        "not serialisable",
        lambda app, f: app.enqueue("pay.charge", args={"cents": uuid.uuid4()}),
        ARGS_NOT_SERIALIZABLE,
    ),
    (
        "bad target",
        lambda app, f: app.enqueue(42),  # type: ignore[call-overload]
        INVALID_TARGET,
    ),
    (
        "naive scheduled_at",
        lambda app, f: app.enqueue(f, cents=1, scheduled_at=NAIVE),
        NAIVE_DATETIME,
    ),
    ("naive run_at", lambda app, f: app.schedule(f, NAIVE, cents=1), NAIVE_DATETIME),
    ("negative run_at", lambda app, f: app.schedule(f, -5, cents=1), INVALID_SCHEDULE),
    (
        "text scheduled_at",
        lambda app, f: app.enqueue(f, cents=1, scheduled_at="tomorrow"),  # type: ignore[call-overload]
        INVALID_SCHEDULE,
    ),
    ("priority 0", lambda app, f: app.enqueue(f, cents=1, priority=0), INVALID_PRIORITY),
    ("priority bool", lambda app, f: app.enqueue(f, cents=1, priority=True), INVALID_PRIORITY),
    ("blank queue", lambda app, f: app.enqueue(f, cents=1, queue=""), INVALID_QUEUE),
    ("empty dedup key", lambda app, f: app.enqueue(f, cents=1, dedup_key=""), INVALID_DEDUP_KEY),
    (
        "one bad item in a batch",
        lambda app, f: app.enqueue_many(f, [{"cents": 1}, {"cents": 2}, {}]),
        TASK_ARGS_INVALID,
    ),
    # A string that is not a UUID names no job: the lookups answer None/False (see
    # test_parity.py); a value that is not even a string is a bug, and raises.
    ("get_job bad id", lambda app, f: app.get_job(42), INVALID_JOB_ID),  # type: ignore[arg-type]
    ("cancel_job bad id", lambda app, f: app.cancel_job(None), INVALID_JOB_ID),  # type: ignore[arg-type]
    ("retry_job bad id", lambda app, f: app.retry_job(""), INVALID_JOB_ID),
    ("delete_job bad id", lambda app, f: app.delete_job(4.2), INVALID_JOB_ID),  # type: ignore[arg-type]
    ("get_result bad id", lambda app, f: app.get_result(b"x"), INVALID_JOB_ID),  # type: ignore[arg-type]
    (
        "get_result bad result_model",
        lambda app, f: app.get_result(str(uuid.uuid4()), result_model=object()),  # type: ignore[arg-type]
        INVALID_ARGUMENT,
    ),
    ("dead_letter.get bad id", lambda app, f: app.dead_letter.get("x"), INVALID_JOB_ID),
    ("list_jobs bad status", lambda app, f: app.list_jobs(status="dead_letter"), INVALID_ARGUMENT),
    ("list_jobs negative limit", lambda app, f: app.list_jobs(limit=-1), INVALID_ARGUMENT),
    ("list_jobs naive since", lambda app, f: app.list_jobs(since=NAIVE), NAIVE_DATETIME),
    (
        "list_jobs since after until",
        lambda app, f: app.list_jobs(
            since=datetime.now(timezone.utc), until=datetime.now(timezone.utc) - timedelta(1)
        ),
        INVALID_ARGUMENT,
    ),
    ("dead_letter empty name", lambda app, f: app.dead_letter.list(job_name=""), INVALID_ARGUMENT),
    ("prune negative", lambda app, f: app.prune(older_than=-1), INVALID_DURATION),
    (
        "prune text",
        lambda app, f: app.prune(older_than="2h"),  # type: ignore[arg-type]
        INVALID_DURATION,
    ),
    ("schedule every=0", lambda app, f: app.scheduler.add(f, every=0), INVALID_INTERVAL),
]


@pytest.mark.parametrize(("call", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_bad_input_raises_its_code_and_writes_nothing(
    backend_app: Soniq, call: Call, code: str
) -> None:
    app = backend_app

    @app.job(name="pay.charge")
    async def charge(cents: int) -> None: ...

    existing = await app.enqueue(charge, cents=100)  # the store is in use, not just empty
    with pytest.raises(SoniqError) as info:
        await call(app, charge)
    assert info.value.code == code
    assert info.value.message  # says what to do

    assert [j["id"] for j in await app.list_jobs()] == [existing]
    assert await app.dead_letter.count() == 0
    assert await app.scheduler.list() == []


async def test_arguments_json_cannot_carry_raise_a_type_error_everywhere(
    backend_app: Soniq,
) -> None:
    app = backend_app

    @app.job(name="pay.charge")
    async def charge(cents: Any) -> None: ...

    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: app.enqueue(charge, cents=uuid.uuid4()),
        lambda: app.enqueue("pay.charge", args={"cents": {1, 2}}),
        lambda: app.schedule(charge, 60, cents=float("nan")),
        lambda: app.enqueue_many(charge, [{"cents": 1}, {"cents": object()}]),
    ]
    for call in calls:
        # SoniqError for Soniq's callers, TypeError for code written against json or
        # Django's tasks framework: one exception, both.
        with pytest.raises(TypeError) as info:
            await call()
        assert isinstance(info.value, SoniqError)
        assert info.value.code == ARGS_NOT_SERIALIZABLE
        assert "cents" in info.value.message
    assert await app.list_jobs() == []
