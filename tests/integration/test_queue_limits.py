"""A queue's own limits (``app.queues.set_limits``), on real PostgreSQL, through the
public API and an in-process worker: what the gated claim admits, that keyed jobs of
a limited queue are held to both limits, that other queues never wait for it, and
how bad input is refused. The cross-process properties (many workers, the admission
race) are in tests/acceptance/test_limits_process.py."""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result

import soniq_sync
from soniq import Concurrency, RateLimit, Soniq, SoniqError
from soniq.cli import main
from soniq.errors import (
    INVALID_ARGUMENT,
    INVALID_QUEUE,
    LIMITS_NEED_READ_COMMITTED,
    NOT_SUPPORTED_BY_BACKEND,
)
from soniq.worker import Worker
from tests.helpers import wait_for


class Spans:
    """Start and end times of each handler run, by tag, to measure overlap."""

    def __init__(self) -> None:
        self.by_tag: dict[object, list[tuple[float, float]]] = defaultdict(list)

    async def run(self, *tags: object, seconds: float = 0.005) -> None:
        began = time.monotonic()
        await asyncio.sleep(seconds)
        for tag in tags:
            self.by_tag[tag].append((began, time.monotonic()))

    def overlap(self, tag: object) -> int:
        events = sorted(
            [(a, 1) for a, _ in self.by_tag[tag]] + [(b, -1) for _, b in self.by_tag[tag]]
        )
        running = most = 0
        for _, step in events:
            running += step
            most = max(most, running)
        return most


async def rows(app: Soniq, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(app.settings.database_url) as conn:
        cur = await conn.execute(sql, params)
        return await cur.fetchall() if cur.description else []


async def statuses(app: Soniq, ids: list[str]) -> list[str]:
    return [(await app.get_job(j) or {}).get("status", "?") for j in ids]


async def test_at_most_the_queues_concurrency_runs_and_other_queues_go_on(app: Soniq) -> None:
    spans = Spans()

    @app.job(name="mail.send", queue="mail")
    async def send(i: int) -> None:
        await spans.run("mail")

    @app.job(name="other.work", queue="other")
    async def work(i: int) -> None:
        await spans.run("other")

    info = await app.queues.set_limits("mail", concurrency=3)
    assert (info.name, info.concurrency, info.rate_limit) == ("mail", 3, None)
    await app.enqueue_many(send, [{"i": i} for i in range(40)])
    await app.enqueue_many(work, [{"i": i} for i in range(40)])
    await app.run_worker(concurrency=16, run_once=True)
    assert len(spans.by_tag["mail"]) == 40 and len(spans.by_tag["other"]) == 40
    assert spans.overlap("mail") == 3  # the limit, reached and never passed
    assert spans.overlap("other") > 3  # the unlimited queue was not held to it
    ((left,),) = await rows(app, "SELECT count(*) FROM soniq_jobs WHERE status <> 'done'")
    assert left == 0


async def test_keyed_jobs_of_a_limited_queue_are_held_to_both_limits(app: Soniq) -> None:
    spans = Spans()

    @app.job(name="sync.tenant", queue="sync", concurrency=Concurrency(1, key="{t}"))
    async def sync_tenant(t: str, i: int) -> None:
        await spans.run("queue", t)

    @app.job(name="sync.plain", queue="sync")
    async def plain(i: int) -> None:
        await spans.run("queue", "plain")

    await app.queues.set_limits("sync", concurrency=5)
    await app.enqueue_many(sync_tenant, [{"t": f"t{i % 2}", "i": i} for i in range(48)])
    await app.enqueue_many(plain, [{"i": i} for i in range(48)])
    await app.run_worker(concurrency=16, run_once=True)
    assert len(spans.by_tag["queue"]) == 96
    assert spans.overlap("queue") == 5  # the queue's limit, over keyed and plain jobs
    # Each key's own limit (1) holds inside the queue's (5), which alone would allow 5.
    assert [len(spans.by_tag[t]) for t in ("t0", "t1")] == [24, 24]
    assert [spans.overlap(t) for t in ("t0", "t1")] == [1, 1]
    assert len(spans.by_tag["plain"]) == 48


async def test_a_queue_rate_paces_starts_by_the_database_clock(app: Soniq) -> None:
    @app.job(name="calls.make", queue="calls")
    async def make(i: int) -> None: ...

    await app.queues.set_limits("calls", rate=RateLimit(10, per=1))
    ids = await app.enqueue_many(make, [{"i": i} for i in range(13)])
    worker = Worker(app.backend, app.registry)
    running = asyncio.create_task(worker.run(concurrency=8))
    try:
        await wait_for(
            lambda: _all_done(app, ids), 20, message="the paced jobs of the rate-limited queue"
        )
    finally:
        worker.stop()
        await running
    starts = [
        r[0] for r in await rows(app, "SELECT started_at FROM soniq_jobs ORDER BY started_at")
    ]
    assert len(starts) == 13
    # At most 10 starts in any one-second window: the 11th is a second after the 1st.
    for first, eleventh in zip(starts, starts[10:], strict=False):
        assert eleventh - first >= timedelta(seconds=1)
    ((tat,),) = await rows(app, "SELECT rate_tat FROM soniq_queues WHERE name = 'calls'")
    assert tat > starts[-1]


async def test_concurrency_zero_holds_the_queue_and_clearing_lets_it_go(app: Soniq) -> None:
    @app.job(name="held.job", queue="held")
    async def held(i: int) -> None: ...

    @app.job(name="free.job", queue="free")
    async def free(i: int) -> None: ...

    await app.queues.set_limits("held", concurrency=0)
    held_ids = await app.enqueue_many(held, [{"i": i} for i in range(5)])
    free_ids = await app.enqueue_many(free, [{"i": i} for i in range(5)])
    await app.run_worker(concurrency=4, run_once=True)
    assert await statuses(app, free_ids) == ["done"] * 5
    assert await statuses(app, held_ids) == ["queued"] * 5
    ((attempts,),) = await rows(app, "SELECT sum(attempts) FROM soniq_jobs WHERE queue = 'held'")
    assert attempts == 0  # never claimed, so no attempt spent

    assert await app.queues.clear_limits("held") is True
    assert await app.queues.clear_limits("held") is False  # nothing left to clear
    await app.run_worker(concurrency=4, run_once=True)
    assert await statuses(app, held_ids) == ["done"] * 5


async def test_a_lowered_limit_lets_running_jobs_finish_and_starts_none_above_it(
    app: Soniq,
) -> None:
    release = asyncio.Event()
    lowered = False
    now_running: list[int] = []
    seen_at_start: list[int] = []  # how many ran, this one included, as each started late
    done: list[int] = []

    @app.job(name="long.job", queue="long")
    async def long_job(i: int) -> None:
        now_running.append(i)
        if lowered:
            seen_at_start.append(len(now_running))
        await release.wait()
        await asyncio.sleep(0.002)
        now_running.remove(i)
        done.append(i)

    await app.queues.set_limits("long", concurrency=4)
    await app.enqueue_many(long_job, [{"i": i} for i in range(10)])
    worker = Worker(app.backend, app.registry)
    task = asyncio.create_task(worker.run(concurrency=8))
    try:
        await wait_for(lambda: len(now_running) == 4, 10, message="four jobs running")
        await app.queues.set_limits("long", concurrency=1)
        lowered = True
        release.set()
        await wait_for(lambda: len(done) == 10, 20, message="every job to finish")
    finally:
        release.set()
        worker.stop()
        await task
    # The four running when the limit fell finished; the six after ran one at a time.
    assert seen_at_start == [1] * 6


async def test_list_and_status_show_a_queues_limits(app: Soniq) -> None:
    @app.job(name="mail.send", queue="mail")
    async def send(i: int) -> None: ...

    await app.queues.set_limits("mail", concurrency=2, rate=RateLimit(50, per=60, burst=5))
    await app.queues.set_limits("idle", concurrency=1)  # no jobs: listed for its limits
    await app.enqueue(send, i=1)
    listed = {q.name: q for q in await app.queues.list()}
    assert set(listed) == {"idle", "mail"}
    mail = listed["mail"].as_dict()
    assert (mail["concurrency"], mail["rate_limit"], mail["rate_period"], mail["burst"]) == (
        2,
        50,
        60.0,
        5,
    )
    assert (mail["queued"], mail["paused"]) == (1, False)
    # A pause and limits live on the same row, and neither undoes the other.
    await app.queues.pause("mail", wait=False)
    await app.queues.resume("mail")
    assert {q.name: q.concurrency for q in await app.queues.list()}["mail"] == 2
    # Setting the limits replaces both: the rate left out is no rate limit.
    again = await app.queues.set_limits("mail", concurrency=7)
    assert (again.concurrency, again.rate_limit, again.rate_period) == (7, None, None)


@pytest.mark.parametrize(
    ("call", "words"),
    [
        ({"name": "*", "concurrency": 1}, "not '*'"),
        ({"name": "mail"}, "needs concurrency=N"),
        ({"name": "mail", "concurrency": -1}, "concurrency= must be an int"),
        ({"name": "mail", "concurrency": True}, "concurrency= must be an int"),
        ({"name": "mail", "rate": 5}, "takes RateLimit"),
        ({"name": "mail", "rate": RateLimit(5, per=1, key="{k}")}, "no key= or group="),
        ({"name": "mail", "rate": RateLimit(0, per=1)}, "RateLimit(limit)"),
        ({"name": "", "concurrency": 1}, "queue"),
        ({"name": "q" * 201, "concurrency": 1}, "queue"),
    ],
)
async def test_bad_queue_limits_are_refused_and_nothing_is_written(
    app: Soniq, call: dict[str, Any], words: str
) -> None:
    await app.ensure_initialized()
    with pytest.raises(SoniqError) as refused:
        await app.queues.set_limits(**call)
    # A bad queue name has the code enqueue gives it; the rest are bad arguments.
    assert refused.value.code == (INVALID_QUEUE if words == "queue" else INVALID_ARGUMENT)
    assert words in refused.value.message
    assert await rows(app, "SELECT name FROM soniq_queues") == []


async def test_the_gated_claim_refuses_a_snapshot_isolation_level(app: Soniq) -> None:
    @app.job(name="mail.send", queue="mail")
    async def send(i: int) -> None: ...

    await app.queues.set_limits("mail", concurrency=2)
    ids = await app.enqueue_many(send, [{"i": i} for i in range(3)])
    async with await psycopg.AsyncConnection.connect(app.settings.database_url) as conn:
        await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
        with pytest.raises(psycopg.errors.RaiseException) as refused:
            await conn.execute(
                "SELECT * FROM soniq_claim_gated(gen_random_uuid(), NULL, NULL, 64, 8)"
            )
        assert LIMITS_NEED_READ_COMMITTED in str(refused.value)
    assert await statuses(app, ids) == ["queued"] * 3


async def test_a_worker_serving_other_queues_never_claims_a_limited_queue(app: Soniq) -> None:
    @app.job(name="mail.send", queue="mail")
    async def send(i: int) -> None: ...

    await app.queues.set_limits("mail", concurrency=1)
    ids = await app.enqueue_many(send, [{"i": i} for i in range(3)])
    await app.run_worker(concurrency=4, run_once=True, queues=["other"])
    assert await statuses(app, ids) == ["queued"] * 3
    await app.run_worker(concurrency=4, run_once=True, queues=["mail"])
    assert await statuses(app, ids) == ["done"] * 3


async def test_queue_limits_need_postgres() -> None:
    app = Soniq(backend="memory")
    try:
        with pytest.raises(SoniqError) as refused:
            await app.queues.set_limits("mail", concurrency=1)
        assert refused.value.code == NOT_SUPPORTED_BY_BACKEND
        with pytest.raises(SoniqError):
            await app.queues.clear_limits("mail")
    finally:
        await app.close()


def test_the_blocking_twin_sets_and_clears_queue_limits(sync_app: soniq_sync.Soniq) -> None:
    info = sync_app.queues.set_limits("mail", concurrency=2, rate=RateLimit(5, per=1))
    assert (info.concurrency, info.rate_limit, info.rate_period) == (2, 5, 1.0)
    assert [q.name for q in sync_app.queues.list()] == ["mail"]
    assert sync_app.queues.clear_limits("mail") is True
    assert sync_app.queues.list() == []


async def _all_done(app: Soniq, ids: list[str]) -> bool:
    return await statuses(app, ids) == ["done"] * len(ids)


def soniq(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_cli_limit_list_status_and_clear(database_url: str) -> None:
    url = ("--database-url", database_url)
    made = soniq(
        "queues", "limit", "mail", "--concurrency", "4", "--rate", "100/min",
        "--burst", "10", "--json", *url,
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    body = json.loads(made.output)
    assert (body["name"], body["concurrency"], body["rate_limit"]) == ("mail", 4, 100)
    assert (body["rate_period"], body["burst"]) == (60.0, 10)

    text = soniq("queues", "limit", "mail", "--rate", "50/s", *url)
    assert text.exit_code == 0
    assert "queue 'mail'" in text.output and "concurrency no limit, rate 50/s" in text.output

    table = soniq("queues", "list", *url).output
    assert "CONCURRENCY" in table and "RATE" in table and "50/s" in table
    listed = json.loads(soniq("queues", "list", "--json", *url).output)
    assert [(q["name"], q["concurrency"], q["rate_limit"]) for q in listed] == [("mail", None, 50)]

    status = soniq("status", *url).output
    assert "Limited: queue mail, concurrency no limit, rate 50/s." in status
    status_json = json.loads(soniq("status", "--json", *url).output)
    assert status_json["limited_queues"] == [
        {"name": "mail", "concurrency": None, "rate_limit": 50, "rate_period": 1.0, "burst": 1}
    ]

    cleared = soniq("queues", "limit", "mail", "--clear", "--json", *url)
    assert json.loads(cleared.output) == {"name": "mail", "cleared": True}
    again = soniq("queues", "limit", "mail", "--clear", *url)
    assert again.exit_code == 0 and "had no limits" in again.output
    assert "Limited:" not in soniq("status", *url).output


@pytest.mark.parametrize(
    "args",
    [
        ("mail",),
        ("mail", "--rate", "fast"),
        ("mail", "--rate", "0/s"),
        ("mail", "--concurrency", "1", "--burst", "3"),
        ("mail", "--concurrency", "-1"),
        ("mail", "--rate", "5/s", "--burst", "0"),
        ("mail", "--clear", "--concurrency", "1"),
        ("*", "--concurrency", "1"),
    ],
)
def test_cli_limit_refuses_bad_input_and_writes_nothing(
    database_url: str, args: tuple[str, ...]
) -> None:
    result = CliRunner().invoke(main, ["queues", "limit", *args, "--database-url", database_url])
    assert result.exit_code == 1, result.output
    assert "SONIQ_INVALID_ARGUMENT" in result.stderr and "soniq: error:" in result.stderr
    listed = soniq("queues", "list", "--json", "--database-url", database_url)
    assert json.loads(listed.output) == []


async def test_a_queue_full_by_concurrency_gives_no_wake_up_time_even_when_rated(
    app: Soniq,
) -> None:
    # A queue at its concurrency limit waits for a job to end (which wakes the
    # workers); only its rate has a time to wake at. Else an idle worker would claim in
    # a loop.
    @app.job(name="mail.send", queue="mail")
    async def send(i: int) -> None: ...

    await app.queues.set_limits("mail", concurrency=1, rate=RateLimit(1, per=3600))
    await app.enqueue_many(send, [{"i": 1}, {"i": 2}])
    claim = (
        "SELECT count(id), max(wake_in) "
        "FROM soniq_claim_gated(gen_random_uuid(), NULL, NULL, 64, 8)"
    )
    ((count, _),) = await rows(app, claim)
    assert count == 1
    assert await rows(app, claim) == [(0, None)]  # full, and rated too: no time to wake at
    await app.queues.set_limits("mail", concurrency=5, rate=RateLimit(1, per=3600))
    ((count, wake_in),) = await rows(app, claim)
    assert count == 0 and 3500 < wake_in <= 3600  # held back by its rate alone: wake then
