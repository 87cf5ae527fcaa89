"""``app.dead_letter`` on every backend: list/count filters, replay, replay_many,
purge and an export/import round trip. Dead letters are made the way users get
them: by jobs that fail for good."""

from __future__ import annotations

import io
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from soniq import JobContext, Soniq, SoniqError
from soniq.errors import FILTER_REQUIRED, INVALID_ARGUMENT, INVALID_JOB_ID, JOB_NOT_FOUND
from soniq.testing import drain


async def bury(app: Soniq) -> dict[str, list[str]]:
    """Dead-letter four jobs; return their ids by kind, each list oldest first.

    ``card``: two ``billing.charge`` jobs (queue ``billing``, "card declined");
    ``mail``: one ``mail.send`` (queue ``mail``, "smtp timeout");
    ``report``: one ``report.build`` (queue ``default``, "disk full").
    """

    @app.job(name="billing.charge", queue="billing", retries=0)
    async def charge(order: int) -> None:
        raise ValueError(f"card declined for order {order}")

    @app.job(name="mail.send", queue="mail", retries=0)
    async def send(to: str) -> None:
        raise TimeoutError("smtp timeout")

    @app.job(name="report.build", retries=0)
    def build() -> None:
        raise OSError("disk full")

    ids: dict[str, list[str]] = {"card": [], "mail": [], "report": []}
    # One worker run per job, so dead_lettered_at follows this order.
    runs: list[tuple[str, Callable[[], Awaitable[str]]]] = [
        ("card", lambda: app.enqueue(charge, order=1)),
        ("mail", lambda: app.enqueue(send, to="a@example.com")),
        ("card", lambda: app.enqueue(charge, order=2)),
        ("report", lambda: app.enqueue(build)),
    ]
    for kind, enqueue in runs:
        ids[kind].append(await enqueue())
        report = await drain(app)
        assert report.dead_lettered == 1
    return ids


def ids_of(records: list[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in records]


async def test_list_and_count_with_filters(backend_app: Soniq) -> None:
    app = backend_app
    ids = await bury(app)
    card, mail, report = ids["card"], ids["mail"], ids["report"]

    assert ids_of(await app.dead_letter.list()) == [report[0], card[1], mail[0], card[0]]
    assert ids_of(await app.dead_letter.list(job_name="billing.charge")) == card[::-1]
    assert ids_of(await app.dead_letter.list(queue="mail")) == mail
    assert ids_of(await app.dead_letter.list(reason="DISK FULL")) == report  # ignores case
    assert ids_of(await app.dead_letter.list(limit=2, offset=1)) == [card[1], mail[0]]
    assert await app.dead_letter.count() == 4
    assert await app.dead_letter.count(queue="billing", reason="order 2") == 1

    newest = await app.dead_letter.get(report[0])
    assert newest is not None
    since = newest["dead_lettered_at"]
    assert ids_of(await app.dead_letter.list(since=since)) == report
    assert await app.dead_letter.count(until=since) == 3
    future = datetime.now(timezone.utc) + timedelta(days=1)
    assert await app.dead_letter.list(since=future) == []


async def test_replay_one(backend_app: Soniq) -> None:
    app = backend_app
    ids = await bury(app)
    (mail,) = ids["mail"]

    new_id = await app.dead_letter.replay(mail)
    job = await app.get_job(new_id)
    assert job is not None
    assert (job["job_name"], job["args"], job["queue"], job["status"]) == (
        "mail.send",
        {"to": "a@example.com"},
        "mail",
        "queued",
    )
    record = await app.dead_letter.get(mail)  # the record stays
    assert record is not None and record["resurrection_count"] == 1
    assert record["last_resurrected_at"] is not None
    assert await app.dead_letter.count() == 4

    with pytest.raises(SoniqError) as info:
        await app.dead_letter.replay("00000000-0000-4000-8000-000000000000")
    assert info.value.code == JOB_NOT_FOUND
    with pytest.raises(SoniqError) as info:
        await app.dead_letter.replay("not-a-uuid")
    assert info.value.code == INVALID_JOB_ID


async def test_replay_many_with_filters(backend_app: Soniq) -> None:
    app = backend_app
    ids = await bury(app)
    batches: list[int] = []

    new_ids = await app.dead_letter.replay_many(job_name="billing.charge", progress=batches.append)
    assert len(new_ids) == len(set(new_ids)) == 2 and sum(batches) == 2
    jobs = [await app.get_job(i) for i in new_ids]
    # most recent record first
    assert [j["args"] for j in jobs if j is not None] == [{"order": 2}, {"order": 1}]
    counts = {r["id"]: r["resurrection_count"] for r in await app.dead_letter.list()}
    assert counts == {ids["card"][0]: 1, ids["card"][1]: 1, ids["mail"][0]: 0, ids["report"][0]: 0}

    assert len(await app.dead_letter.replay_many(limit=1)) == 1
    assert await app.dead_letter.replay_many(queue="nowhere") == []
    assert len(await app.list_jobs()) == 3


async def test_purge_needs_a_filter_or_all(backend_app: Soniq) -> None:
    app = backend_app
    ids = await bury(app)

    with pytest.raises(SoniqError) as info:
        await app.dead_letter.purge()
    assert info.value.code == FILTER_REQUIRED
    with pytest.raises(SoniqError) as info:
        await app.dead_letter.purge(all=True, queue="mail")
    assert info.value.code == INVALID_ARGUMENT
    assert await app.dead_letter.count() == 4  # nothing deleted

    assert await app.dead_letter.purge(queue="billing") == 2
    assert ids_of(await app.dead_letter.list()) == ids["report"] + ids["mail"]
    assert await app.dead_letter.purge(all=True) == 2
    assert await app.dead_letter.count() == 0


async def test_export_then_import_round_trip(backend_app: Soniq) -> None:
    app = backend_app
    await bury(app)
    before = await app.dead_letter.list()

    out = io.StringIO()
    assert await app.dead_letter.export(out) == 4
    assert len(out.getvalue().splitlines()) == 4
    filtered = io.StringIO()
    assert await app.dead_letter.export(filtered, job_name="mail.send") == 1

    assert await app.dead_letter.purge(all=True) == 4
    result = await app.dead_letter.import_(io.StringIO(out.getvalue()))
    assert (result.imported, result.skipped) == (4, 0)
    assert await app.dead_letter.list() == before

    again = await app.dead_letter.import_(out.getvalue().splitlines())
    assert (again.imported, again.skipped) == (0, 4)
    assert await app.dead_letter.count() == 4


async def test_a_dead_letter_keeps_the_start_of_its_last_attempt(backend_app: Soniq) -> None:
    app = backend_app
    starts: list[datetime] = []

    @app.job(name="flaky.sync", retries=1)
    async def flaky(ctx: JobContext) -> None:
        job = await app.get_job(ctx.job_id)  # the attempt's start, as the claim stored it
        assert job is not None
        starts.append(job["started_at"])
        raise RuntimeError(f"attempt {ctx.attempt}")

    job_id = await app.enqueue(flaky)
    report = await drain(app)
    assert (report.retried, report.dead_lettered) == (1, 1)
    first, last = starts
    assert first < last

    record = await app.dead_letter.get(job_id)
    assert record is not None and record["started_at"] == last
    assert record["original_created_at"] <= last <= record["dead_lettered_at"]
    (listed,) = await app.dead_letter.list()
    assert listed["started_at"] == last
    job = await app.get_job(job_id)
    assert job is not None and job["status"] == "dead_letter" and job["started_at"] == last

    out = io.StringIO()
    await app.dead_letter.export(out)
    assert json.loads(out.getvalue())["started_at"] == last.isoformat()
    await app.dead_letter.purge(all=True)
    await app.dead_letter.import_(io.StringIO(out.getvalue()))
    assert (await app.dead_letter.get(job_id)) == record


async def test_an_export_from_before_started_at_imports(backend_app: Soniq) -> None:
    app = backend_app
    old_line = {
        "id": "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b",
        "job_name": "x.job",
        "args": {"a": 1},
        "queue": "default",
        "priority": 100,
        "attempts": 1,
        "max_attempts": 1,
        "reason": "Failed all 1 attempts.",
        "last_error": "RuntimeError: x",
        "traceback": None,
        "original_created_at": "2024-05-01T10:00:00+00:00",
        "dead_lettered_at": "2024-05-01T11:00:00+00:00",
        "resurrection_count": 0,
        "last_resurrected_at": None,
    }
    result = await app.dead_letter.import_([json.dumps(old_line)])
    assert (result.imported, result.skipped) == (1, 0)
    record = await app.dead_letter.get(old_line["id"])  # type: ignore[arg-type]
    assert record is not None and record["started_at"] is None
    assert record["reason"] == "Failed all 1 attempts."
