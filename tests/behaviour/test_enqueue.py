"""Enqueueing on every backend: the three target shapes, the job record, filters,
deduplication, priority and queues, delayed jobs and ``enqueue_many``."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from pydantic import BaseModel

from soniq import Soniq, task_ref
from soniq.testing import drain

JOB_KEYS = {
    "id",
    "job_name",
    "args",
    "queue",
    "priority",
    "status",
    "attempts",
    "max_attempts",
    "dedup_key",
    "scheduled_at",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "worker_id",
    "result",
    "last_error",
    "cancel_requested_at",
    "producer_id",
    "progress",
}


class MailArgs(BaseModel):
    to: str


async def test_the_three_target_shapes_write_the_same_kind_of_job(backend_app: Soniq) -> None:
    app = backend_app

    @app.job(name="mail.send")
    async def send(to: str) -> str:
        return f"sent to {to}"

    by_function = await app.enqueue(send, to="a@example.com")
    by_name = await app.enqueue("mail.send", args={"to": "b@example.com"})
    by_ref = await app.enqueue(task_ref("mail.send", MailArgs), args=MailArgs(to="c@example.com"))

    jobs = [await app.get_job(i) for i in (by_function, by_name, by_ref)]
    assert [(j["job_name"], j["args"]) for j in jobs if j is not None] == [
        ("mail.send", {"to": "a@example.com"}),
        ("mail.send", {"to": "b@example.com"}),
        ("mail.send", {"to": "c@example.com"}),
    ]
    await app.run_worker(run_once=True)
    assert [await app.get_result(i) for i in (by_function, by_name, by_ref)] == [
        "sent to a@example.com",
        "sent to b@example.com",
        "sent to c@example.com",
    ]


async def test_get_job_describes_a_new_job(backend_app: Soniq) -> None:
    app = backend_app

    @app.job(name="report.build", retries=2, queue="reports", priority=40)
    def build(month: str) -> None: ...

    before = datetime.now(timezone.utc)
    job_id = await app.enqueue(build, month="2025-01")
    job = await app.get_job(job_id)

    assert job is not None
    assert set(job) == JOB_KEYS
    assert isinstance(job_id, str) and job["id"] == job_id
    assert (job["job_name"], job["args"], job["queue"], job["priority"]) == (
        "report.build",
        {"month": "2025-01"},
        "reports",
        40,
    )
    assert (job["status"], job["attempts"], job["max_attempts"]) == ("queued", 0, 3)
    assert job["dedup_key"] is None and job["result"] is None and job["last_error"] is None
    assert job["started_at"] is None and job["finished_at"] is None
    for key in ("created_at", "scheduled_at"):
        stamp = job[key]
        assert stamp.tzinfo is not None
        assert before - timedelta(seconds=5) < stamp < before + timedelta(seconds=60)
    assert await app.get_job("00000000-0000-4000-8000-000000000000") is None


async def test_list_jobs_filters(backend_app: Soniq) -> None:
    app = backend_app

    @app.job(name="f.one")
    async def one() -> None: ...

    @app.job(name="f.two")
    async def two() -> None: ...

    first = await app.enqueue(one)
    second = await app.enqueue(two, queue="side")
    third = await app.enqueue(one)
    await app.run_worker(run_once=True, queues=["side"])  # second is now done

    def ids(jobs: list[dict[str, object]]) -> list[object]:
        return [j["id"] for j in jobs]

    assert ids(await app.list_jobs()) == [third, second, first]  # newest first
    assert ids(await app.list_jobs(status="queued")) == [third, first]
    assert ids(await app.list_jobs(status="done")) == [second]
    assert ids(await app.list_jobs(queue="side")) == [second]
    assert ids(await app.list_jobs(job_name="f.one")) == [third, first]
    assert ids(await app.list_jobs(limit=1)) == [third]
    assert ids(await app.list_jobs(limit=1, offset=1)) == [second]
    assert ids(await app.list_jobs(offset=3)) == []

    middle = await app.get_job(second)
    assert middle is not None
    # since is inclusive and until exclusive, both on created_at.
    assert ids(await app.list_jobs(since=middle["created_at"])) == [third, second]
    assert ids(await app.list_jobs(until=middle["created_at"])) == [first]
    assert ids(await app.list_jobs(since=middle["created_at"], job_name="f.one")) == [third]


async def test_dedup_key_returns_the_queued_job_then_allows_a_new_one(backend_app: Soniq) -> None:
    app = backend_app
    ran: list[int] = []

    @app.job(name="bill.order")
    def bill(order_id: int) -> None:
        ran.append(order_id)

    first = await app.enqueue(bill, order_id=7, dedup_key="order-7")
    again = await app.enqueue(bill, order_id=8, dedup_key="order-7")
    by_args = await app.enqueue(bill, order_id=9, unique=True)
    by_args_again = await app.enqueue(bill, order_id=9, unique=True)

    assert again == first and by_args_again == by_args
    assert len(await app.list_jobs()) == 2
    job = await app.get_job(first)
    assert job is not None and job["dedup_key"] == "order-7"

    await app.run_worker(run_once=True)
    assert sorted(ran) == [7, 9]  # the duplicate's arguments were never stored
    after = await app.enqueue(bill, order_id=8, dedup_key="order-7")
    assert after != first
    new = await app.get_job(after)
    assert new is not None and (new["status"], new["args"]) == ("queued", {"order_id": 8})


async def test_lower_priority_number_runs_first(backend_app: Soniq) -> None:
    app = backend_app
    order: list[str] = []

    @app.job()
    def record(tag: str) -> None:
        order.append(tag)

    await app.enqueue(record, tag="p500", priority=500)
    await app.enqueue(record, tag="p5", priority=5)
    await app.enqueue(record, tag="p100")
    await app.enqueue(record, tag="p50", priority=50)
    await app.run_worker(run_once=True, concurrency=1)
    assert order == ["p5", "p50", "p100", "p500"]


async def test_a_worker_serves_only_its_queues(backend_app: Soniq) -> None:
    app = backend_app

    @app.job()
    async def noop() -> None: ...

    a = await app.enqueue(noop, queue="a")
    b = await app.enqueue(noop, queue="b")
    default = await app.enqueue(noop)
    assert await app.run_worker(run_once=True, queues=["a"]) is True

    statuses = [await app.get_job(i) for i in (a, b, default)]
    assert [s["status"] for s in statuses if s is not None] == ["done", "queued", "queued"]
    assert await app.run_worker(run_once=True, queues=["a"]) is False


async def test_a_future_job_waits_until_due(backend_app: Soniq) -> None:
    app = backend_app

    @app.job()
    async def later(n: int) -> int:
        return n

    in_an_hour = datetime.now(timezone.utc) + timedelta(hours=1)
    at = await app.enqueue(later, n=1, scheduled_at=in_an_hour)
    delayed = await app.schedule(later, 3600, n=2)
    past = await app.enqueue(later, n=3, scheduled_at=in_an_hour - timedelta(days=1))

    assert await app.run_worker(run_once=True) is True  # only the past one is due
    jobs = [await app.get_job(i) for i in (at, delayed, past)]
    assert [j["status"] for j in jobs if j is not None] == ["queued", "queued", "done"]
    stored = jobs[0]
    assert stored is not None and abs(stored["scheduled_at"] - in_an_hour) < timedelta(seconds=1)

    report = await drain(app, skip_delays=True)
    assert report.done == 2
    assert [await app.get_result(i) for i in (at, delayed)] == [1, 2]


async def test_enqueue_many_returns_ids_in_item_order(backend_app: Soniq) -> None:
    app = backend_app

    @app.job(name="bulk.item")
    async def item(n: int) -> int:
        return n * n

    ids = await app.enqueue_many(item, [{"n": n} for n in range(5)], queue="bulk", priority=9)
    assert len(set(ids)) == 5
    jobs = [await app.get_job(i) for i in ids]
    assert [(j["args"], j["queue"], j["priority"]) for j in jobs if j is not None] == [
        ({"n": n}, "bulk", 9) for n in range(5)
    ]
    assert await app.enqueue_many(item, []) == []
    await app.run_worker(run_once=True)
    assert [await app.get_result(i) for i in ids] == [0, 1, 4, 9, 16]


async def test_enqueue_many_with_dedup_reuses_queued_ids(backend_app: Soniq) -> None:
    app = backend_app

    @app.job(name="bulk.unique")
    async def once(n: int) -> None: ...

    existing = await app.enqueue(once, n=1, unique=True)
    ids = await app.enqueue_many(once, [{"n": 1}, {"n": 2}, {"n": 2}, {"n": 3}], unique=True)

    assert ids[0] == existing
    assert ids[1] == ids[2] != existing
    assert len({*ids}) == 3
    assert sorted(j["args"]["n"] for j in await app.list_jobs()) == [1, 2, 3]
