"""Concurrency and rate limit declarations: every bad one is refused when declared,
with a stable code and a message that says what to write instead."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from soniq import Concurrency, RateLimit, RateLimited, Soniq, SoniqError, task_ref
from soniq.errors import INVALID_JOB_OPTION


def declare(**options: Any) -> None:
    app = Soniq(backend="memory")

    @app.job(name="t", **options)
    async def t(customer_id: int, region: str = "eu") -> None: ...


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"concurrency": 2}, "Concurrency(limit"),
        ({"concurrency": Concurrency(-1)}, "int from 0"),
        ({"concurrency": Concurrency(True)}, "int from 0"),  # type: ignore[arg-type]
        ({"concurrency": Concurrency(2**31)}, "int from 0 to 2147483647"),
        ({"concurrency": Concurrency(2, key="{order_id}")}, "'order_id'"),
        ({"concurrency": Concurrency(2, key="{}")}, "name arguments"),
        ({"concurrency": Concurrency(2, key="{0}")}, "name arguments"),
        ({"concurrency": Concurrency(2, key="static")}, "reads no argument"),
        ({"concurrency": Concurrency(2, key="{customer_id")}, "malformed"),
        ({"concurrency": Concurrency(2, group="a:b")}, "contain ':'"),
        ({"rate_limit": RateLimit(0, per=1)}, "int from 1"),
        ({"rate_limit": RateLimit(5, per=timedelta(days=400))}, "366 days"),
        ({"rate_limit": RateLimit(5, per=0)}, "positive number"),
        ({"rate_limit": RateLimit(5, per=float("inf"))}, "positive number"),
        ({"rate_limit": RateLimit(5, per="1s")}, "positive number"),  # type: ignore[arg-type]
        ({"rate_limit": RateLimit(5, per=1, burst=0)}, "burst"),
        ({"rate_limit": RateLimit(1, per=86400, burst=400)}, "earn back"),
        (
            {
                "concurrency": Concurrency(2, key="{customer_id}"),
                "rate_limit": RateLimit(5, per=1, key="{region}"),
            },
            "same key",
        ),
    ],
)
def test_a_bad_declaration_is_refused(options: dict[str, Any], says: str) -> None:
    with pytest.raises(SoniqError) as refused:
        declare(**options)
    assert refused.value.code == INVALID_JOB_OPTION
    assert says in refused.value.message


def test_good_declarations_and_their_keys() -> None:
    declare(concurrency=Concurrency(0))  # 0 holds every job
    declare(
        concurrency=Concurrency(2, key="{customer_id}"),
        rate_limit=RateLimit(100, per=timedelta(minutes=1), key="{customer_id}", burst=10),
    )
    assert RateLimit(1, per=timedelta(minutes=1)).period == 60.0


def test_tasks_that_share_a_group_must_agree_on_its_limits() -> None:
    app = Soniq(backend="memory")

    @app.job(name="a", concurrency=Concurrency(1, key="{t}", group="writes"))
    async def a(t: str) -> None: ...

    @app.job(name="b", concurrency=Concurrency(1, key="{t}", group="writes"))
    async def b(t: str) -> None: ...

    with pytest.raises(SoniqError) as refused:

        @app.job(name="c", concurrency=Concurrency(5, group="writes"))
        async def c() -> None: ...

    assert refused.value.code == INVALID_JOB_OPTION and "'writes'" in refused.value.message
    assert [g["name"] for g in app.registry.limit_groups()] == ["writes"]


def test_a_task_ref_checks_its_template_against_its_args_model() -> None:
    from pydantic import BaseModel

    class Args(BaseModel):
        account: str

    task_ref("billing.charge", Args, concurrency=Concurrency(1, key="{account}"))
    with pytest.raises(SoniqError) as refused:
        task_ref("billing.charge", Args, concurrency=Concurrency(1, key="{acount}"))
    assert refused.value.code == INVALID_JOB_OPTION and "'acount'" in refused.value.message
    ref = task_ref("plain.task")
    assert "concurrency" not in repr(ref)
    assert "concurrency=Concurrency(limit=2" in repr(
        task_ref("plain.task", concurrency=Concurrency(2))
    )


@pytest.mark.parametrize("bad", ["soon", float("nan"), True, None])
def test_rate_limited_takes_seconds_or_a_timedelta(bad: Any) -> None:
    with pytest.raises(SoniqError) as refused:
        RateLimited(retry_after=bad)
    assert refused.value.code == INVALID_JOB_OPTION
    assert RateLimited(timedelta(seconds=3)).retry_after == 3.0
    assert RateLimited(-2).retry_after == 0.0
