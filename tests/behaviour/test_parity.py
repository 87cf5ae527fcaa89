"""Drop-in parity with the original Soniq, on every backend: the app's lifecycle
properties, queue totals, lookups by an id that is not a UUID, typed results,
``scheduled_at`` as seconds or a timedelta, and the ``producer_id`` of every row."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import BaseModel

from soniq import Soniq, SoniqError
from soniq.errors import INVALID_SCHEDULE, INVALID_SETTING, RESULT_INVALID
from soniq.testing import drain

DEFAULT_PRODUCER = f"{socket.gethostname()}:{os.getpid()}"


class Receipt(BaseModel):
    total: int
    currency: str


@dataclass
class Point:
    x: int
    y: int


async def test_lifecycle_properties(backend_app: Soniq) -> None:
    app = backend_app
    assert (app.is_initialized, app.is_closed) == (False, False)

    @app.job()
    async def noop() -> None: ...

    await app.enqueue(noop)  # first use initialises
    assert (app.is_initialized, app.is_closed) == (True, False)
    await app.close()
    assert (app.is_initialized, app.is_closed) == (False, True)
    await app.close()  # idempotent
    assert app.is_closed
    # A closed app is not dead: its next use reconnects.
    assert len(await app.list_jobs()) == 1
    assert (app.is_initialized, app.is_closed) == (True, False)


async def test_an_unknown_constructor_keyword_is_refused_with_a_suggestion(
    make_app: Callable[..., Soniq],
) -> None:
    with pytest.raises(SoniqError) as caught:
        make_app(concurency=4)
    assert caught.value.code == INVALID_SETTING
    assert caught.value.details["setting"] == "concurency"
    assert "Did you mean 'concurrency'?" in caught.value.message


async def test_get_queue_stats_is_one_dict_whose_total_sums_the_rest(backend_app: Soniq) -> None:
    app = backend_app
    assert await app.get_queue_stats() == {
        "total": 0,
        "queued": 0,
        "processing": 0,
        "done": 0,
        "dead_letter": 0,
        "cancelled": 0,
    }

    @app.job()
    async def ok() -> None: ...

    @app.job(retries=0)
    async def bad() -> None:
        raise RuntimeError("no")

    await app.enqueue(ok, queue="a")
    await app.enqueue(bad, queue="b")
    await drain(app)
    await app.enqueue(ok, queue="b")
    await app.cancel_job(await app.enqueue(ok, queue="c"))
    stats = await app.get_queue_stats()
    assert stats == {
        "total": 4,
        "queued": 1,
        "processing": 0,
        "done": 1,
        "dead_letter": 1,
        "cancelled": 1,
    }
    by_queue = await app.get_queue_stats_by_queue()
    assert [(q["queue"], q["total"]) for q in by_queue] == [("a", 1), ("b", 2), ("c", 1)]


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "", "42", "123e4567-e89b-12d3-a456"])
async def test_lookups_by_a_string_that_is_not_a_uuid_find_nothing(
    backend_app: Soniq, bad_id: str
) -> None:
    app = backend_app

    @app.job()
    async def noop() -> None: ...

    existing = await app.enqueue(noop)
    assert await app.get_job(bad_id) is None
    assert await app.get_result(bad_id) is None
    assert await app.cancel_job(bad_id) is False
    assert await app.delete_job(bad_id) is False
    assert [j["id"] for j in await app.list_jobs()] == [existing]
    job = await app.get_job(existing)
    assert job is not None and job["status"] == "queued"


async def test_get_result_validates_into_result_model(backend_app: Soniq) -> None:
    app = backend_app

    @app.job()
    async def checkout() -> dict[str, object]:
        return {"total": 1250, "currency": "EUR"}

    @app.job()
    async def where() -> dict[str, int]:
        return {"x": 1, "y": 2}

    @app.job()
    async def nothing() -> None: ...

    paid, point = await app.enqueue(checkout), await app.enqueue(where)
    empty = await app.enqueue(nothing)
    assert (await drain(app)).done == 3

    receipt = await app.get_result(paid, result_model=Receipt)
    assert receipt == Receipt(total=1250, currency="EUR")
    assert await app.get_result(point, result_model=Point) == Point(1, 2)
    assert await app.get_result(paid) == {"total": 1250, "currency": "EUR"}
    assert await app.get_result(empty, result_model=Receipt) is None  # no result at all

    with pytest.raises(SoniqError) as caught:
        await app.get_result(point, result_model=Receipt)
    assert caught.value.code == RESULT_INVALID
    assert caught.value.details == {"job_id": point, "model": "Receipt"}
    assert "Receipt" in caught.value.message


async def test_scheduled_at_takes_seconds_or_a_timedelta(backend_app: Soniq) -> None:
    app = backend_app

    @app.job()
    async def later(n: int) -> None: ...

    before = datetime.now(timezone.utc)
    in_seconds = await app.enqueue(later, n=1, scheduled_at=90)
    in_delta = await app.enqueue(later, n=2, scheduled_at=timedelta(minutes=10))
    batch = await app.enqueue_many(later, [{"n": 3}, {"n": 4}], scheduled_at=30.5)
    after = datetime.now(timezone.utc)

    async def due(job_id: str) -> datetime:
        job = await app.get_job(job_id)
        assert job is not None
        value: datetime = job["scheduled_at"]
        return value

    assert before + timedelta(seconds=90) <= await due(in_seconds) <= after + timedelta(seconds=90)
    assert before + timedelta(minutes=10) <= await due(in_delta)
    assert await due(in_delta) <= after + timedelta(minutes=10)
    for job_id in batch:
        assert before + timedelta(seconds=30) <= await due(job_id) <= after + timedelta(seconds=31)
    assert (await drain(app)).ran == 0  # none is due yet

    with pytest.raises(SoniqError) as caught:
        await app.enqueue(later, n=5, scheduled_at=-1)
    assert caught.value.code == INVALID_SCHEDULE
    assert "scheduled_at" in caught.value.message
    assert len(await app.list_jobs()) == 4


async def test_every_row_carries_the_producer_id(make_app: Callable[..., Soniq]) -> None:
    default = make_app()
    named = make_app(producer_id="billing-api-1")
    assert named.settings.producer_id == "billing-api-1"

    for app in (default, named):

        @app.job(name="parity.noop")
        async def noop(n: int = 0) -> None: ...

    one = await default.enqueue("parity.noop", args={})
    many = await default.enqueue_many("parity.noop", [{"n": 1}, {"n": 2}])
    deduped = await default.enqueue("parity.noop", args={"n": 3}, dedup_key="k")
    later = await default.schedule("parity.noop", 60, args={})
    stamped = await named.enqueue("parity.noop", args={})
    for job_id in (one, *many, deduped, later):
        job = await default.get_job(job_id)
        assert job is not None and job["producer_id"] == DEFAULT_PRODUCER
    job = await named.get_job(stamped)
    assert job is not None and job["producer_id"] == "billing-api-1"
    listed = await named.list_jobs(limit=1)
    assert listed[0]["producer_id"] == "billing-api-1"


async def test_producer_id_auto_means_the_default(make_app: Callable[..., Soniq]) -> None:
    app = make_app(producer_id="auto")
    assert app.settings.producer_id is None

    @app.job()
    async def noop() -> None: ...

    job = await app.get_job(await app.enqueue(noop))
    assert job is not None and job["producer_id"] == DEFAULT_PRODUCER
