"""Enqueue and scheduler misuse raise what the original Soniq raised, on every backend.

The original raised ``TypeError`` (or ``ValueError``) for these; Soniq raises a
``SoniqError`` that is also that built-in, with its stable code, and writes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from soniq import Soniq, SoniqError, task_ref
from soniq.errors import (
    ARGS_CONFLICT,
    CRON_OR_EVERY,
    INVALID_CRON,
    INVALID_TARGET,
    NAIVE_DATETIME,
    TASK_ARGS_INVALID,
)

Call = Callable[[Soniq, Any], Awaitable[Any]]

REF = task_ref("pay.charge")
NAIVE = datetime(2030, 1, 1)

#: (what, call, built-in the original raised, code)
CASES: list[tuple[str, Call, type[Exception], str]] = [
    (
        "args not a dict",
        lambda app, f: app.enqueue("pay.charge", args=[1]),
        TypeError,
        TASK_ARGS_INVALID,
    ),
    (
        "args not a dict (ref)",
        lambda app, f: app.enqueue(REF, args="cents=1"),
        TypeError,
        TASK_ARGS_INVALID,
    ),
    (
        "function with args=",
        lambda app, f: app.enqueue(f, args={"cents": 1}),
        TypeError,
        ARGS_CONFLICT,
    ),
    (
        "name with kwargs",
        lambda app, f: app.enqueue("pay.charge", cents=1),
        TypeError,
        ARGS_CONFLICT,
    ),
    ("ref with kwargs", lambda app, f: app.enqueue(REF, cents=1), TypeError, ARGS_CONFLICT),
    ("target of another type", lambda app, f: app.enqueue(42), TypeError, INVALID_TARGET),
    ("target None", lambda app, f: app.enqueue(None), TypeError, INVALID_TARGET),
    (
        "schedule naive datetime",
        lambda app, f: app.schedule(f, NAIVE, cents=1),
        ValueError,
        NAIVE_DATETIME,
    ),
    (
        "many: target of another type",
        lambda app, f: app.enqueue_many(3.5, [{}]),
        TypeError,
        INVALID_TARGET,
    ),
    (
        "many: item not a dict",
        lambda app, f: app.enqueue_many(f, [{"cents": 1}, [2]]),
        TypeError,
        TASK_ARGS_INVALID,
    ),
    (
        "many: item a string",
        lambda app, f: app.enqueue_many("pay.charge", ["cents"]),
        TypeError,
        TASK_ARGS_INVALID,
    ),
    (
        "many: args_list a dict",
        lambda app, f: app.enqueue_many(REF, {"cents": 1}),
        TypeError,
        TASK_ARGS_INVALID,
    ),
    (
        "many: args_list not iterable",
        lambda app, f: app.enqueue_many(f, 7),
        TypeError,
        TASK_ARGS_INVALID,
    ),
    (
        "scheduler.add both",
        lambda app, f: app.scheduler.add(f, cron="* * * * *", every=5),
        ValueError,
        CRON_OR_EVERY,
    ),
    ("scheduler.add neither", lambda app, f: app.scheduler.add(f), ValueError, CRON_OR_EVERY),
    (
        "scheduler.add bad cron",
        lambda app, f: app.scheduler.add(f, cron="0 25 * * *"),
        ValueError,
        INVALID_CRON,
    ),
    (
        "scheduler.add cron number",
        lambda app, f: app.scheduler.add(f, cron=5),
        TypeError,
        INVALID_CRON,
    ),
]


async def test_misuse_raises_the_originals_builtin_with_its_code(backend_app: Soniq) -> None:
    app = backend_app

    @app.job(name="pay.charge")
    async def charge(cents: int = 0) -> None: ...

    existing = await app.enqueue(charge, cents=100)
    for what, call, builtin, code in CASES:
        try:
            await call(app, charge)
        except builtin as exc:
            assert isinstance(exc, SoniqError), what
            assert exc.code == code, what
            assert exc.error_code == code and exc.message, what
        else:
            raise AssertionError(f"{what}: nothing was raised")
    assert [j["id"] for j in await app.list_jobs()] == [existing]
    assert await app.scheduler.list() == []


async def test_an_enqueue_many_item_error_says_which_and_keeps_its_type(
    backend_app: Soniq,
) -> None:
    app = backend_app

    @app.job(name="pay.charge")
    async def charge(cents: int = 0) -> None: ...

    try:
        await app.enqueue_many(charge, [{"cents": 1}, {"cents": 2}, "three"])
    except TypeError as exc:
        assert isinstance(exc, SoniqError) and exc.code == TASK_ARGS_INVALID
        assert exc.context["index"] == 2
        assert str(exc).startswith("SONIQ_TASK_ARGS_INVALID: args_list[2]: ")
    else:
        raise AssertionError("nothing was raised")
    assert await app.list_jobs() == []
