"""Retry delays through the public API on real PostgreSQL: jitter, the backoff cap and
an app's RetryPolicy.

A retried row's delay is read back exactly as ``scheduled_at - updated_at``: the
retry writes both in one statement, ``scheduled_at = now() + delay``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import psycopg
import pytest

import soniq_sync
from soniq import ExponentialBackoff, RetryPolicy, Soniq, SoniqError
from soniq.core.retry import MAX_RETRY_DELAY, compute_retry_delay_seconds
from soniq.errors import APP_FROZEN, INVALID_ARGUMENT, INVALID_JOB_OPTION
from soniq.testing import drain


async def delays(url: str, ids: list[str]) -> list[float]:
    """Each queued retry's delay in seconds, in the order of ``ids``."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT id::text, status, extract(epoch FROM scheduled_at - updated_at)::float8 "
            "FROM soniq_jobs WHERE id = ANY(%s::uuid[])",
            (ids,),
        )
        rows = {row[0]: row for row in await cur.fetchall()}
    assert {rows[i][1] for i in ids} == {"queued"}, rows
    return [float(rows[i][2]) for i in ids]


class Recording:
    """A policy that answers from a script and remembers what it was asked."""

    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[int, dict[str, Any], BaseException]] = []

    def delay_for(
        self, *, attempt: int, job_meta: Mapping[str, Any], exc: BaseException
    ) -> float | timedelta | None:
        self.calls.append((attempt, dict(job_meta), exc))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]  # also wrong types, on purpose


async def test_jitter_spreads_retries_within_the_upper_half_of_the_delay(
    app: Soniq, database_url: str
) -> None:
    @app.job(name="retry.jittered", retries=1, retry_delay=100, retry_jitter=True)
    async def jittered(n: int) -> None:
        raise RuntimeError("boom")

    @app.job(name="retry.steady", retries=1, retry_delay=100)
    async def steady(n: int) -> None:
        raise RuntimeError("boom")

    jittered_ids = await app.enqueue_many(jittered, [{"n": i} for i in range(40)])
    steady_ids = await app.enqueue_many(steady, [{"n": i} for i in range(5)])
    await app.run_worker(run_once=True)

    spread = await delays(database_url, jittered_ids)
    assert all(50.0 <= d <= 100.0 for d in spread), spread
    # 40 uniform draws over 50 s all within 10 s of each other: odds below 1e-25.
    assert max(spread) - min(spread) > 10.0, spread
    # Without jitter the delay is exactly the configured one, as before.
    assert await delays(database_url, steady_ids) == pytest.approx([100.0] * 5, abs=1e-3)


async def test_jitter_never_exceeds_the_max_delay(app: Soniq, database_url: str) -> None:
    @app.job(retries=1, retry_delay=10, retry_backoff=True, retry_max_delay=8, retry_jitter=True)
    async def capped(n: int) -> None:
        raise RuntimeError("boom")

    ids = await app.enqueue_many(capped, [{"n": i} for i in range(20)])
    await app.run_worker(run_once=True)
    assert all(4.0 <= d <= 8.0 for d in await delays(database_url, ids))


async def test_backoff_after_ten_thousand_attempts_is_finite_and_capped(
    app: Soniq, database_url: str
) -> None:
    @app.job(name="retry.forever", retries=20_000, retry_backoff=True)
    async def forever() -> None:
        raise RuntimeError("again")

    @app.job(name="retry.forever_capped", retries=20_000, retry_backoff=True, retry_max_delay=60)
    async def forever_capped() -> None:
        raise RuntimeError("again")

    ids = [await app.enqueue(forever), await app.enqueue(forever_capped)]
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        # As if 9,999 attempts had failed already: the claim makes this attempt 10,000.
        await conn.execute("UPDATE soniq_jobs SET attempts = 9999")
    await app.run_worker(run_once=True)

    assert await delays(database_url, ids) == pytest.approx([MAX_RETRY_DELAY, 60.0], abs=1e-3)
    assert compute_retry_delay_seconds(10_000, 1.0, True) == MAX_RETRY_DELAY
    assert compute_retry_delay_seconds(10_000, 1.0, True, retry_jitter=True) <= MAX_RETRY_DELAY


async def test_default_delays_are_unchanged(app: Soniq, database_url: str) -> None:
    @app.job(retries=5, retry_delay=[1, 5, 30])
    async def listed() -> None:
        raise RuntimeError("x")

    @app.job(retries=5, retry_delay=2, retry_backoff=True)
    async def doubled() -> None:
        raise RuntimeError("x")

    first = [await app.enqueue(listed), await app.enqueue(doubled)]
    await app.run_worker(run_once=True)
    assert await delays(database_url, first) == pytest.approx([1.0, 2.0], abs=1e-3)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("UPDATE soniq_jobs SET scheduled_at = now(), attempts = 3")
    await app.run_worker(run_once=True)
    # Attempt 4 failed: the list's last value repeats; the backoff is 2 * 2**3.
    assert await delays(database_url, first) == pytest.approx([30.0, 16.0], abs=1e-3)


async def test_a_retry_policy_decides_the_delay_and_when_to_give_up(database_url: str) -> None:
    policy = Recording(7, None)
    async with Soniq(database_url=database_url, retry_policy=policy) as app:
        assert isinstance(policy, RetryPolicy) and app.retry_policy is policy

        @app.job(name="retry.policed", retries=5, retry_delay=1000)
        async def policed(order: int) -> None:
            raise ValueError(f"order {order} is broken")

        job_id = await app.enqueue(policed, order=42)
        await app.run_worker(run_once=True)
        assert await delays(database_url, [job_id]) == pytest.approx([7.0], abs=1e-3)

        await drain(app, skip_delays=True)  # attempt 2 fails; the policy gives up
        (dead,) = await app.dead_letter.list()
        assert dead["id"] == job_id and dead["attempts"] == 2
        assert dead["reason"] == "Retry policy gave up after attempt 2 of 6."
        assert dead["last_error"] == "ValueError: order 42 is broken"

    (attempt, meta, exc), (second, _, _) = policy.calls
    assert (attempt, second) == (1, 2)
    assert isinstance(exc, ValueError) and str(exc) == "order 42 is broken"
    assert meta["job_id"] == job_id and meta["job_name"] == meta["name"] == "retry.policed"
    assert (meta["queue"], meta["max_attempts"], meta["max_retries"]) == ("default", 6, 5)
    assert (meta["args"], meta["retry_delay"], meta["retry_jitter"]) == ({"order": 42}, 1000, False)
    assert meta["error"] == "ValueError: order 42 is broken"


async def test_the_policy_is_not_asked_after_the_last_attempt(database_url: str) -> None:
    policy = Recording()
    async with Soniq(database_url=database_url, retry_policy=policy) as app:

        @app.job(retries=0)
        async def once() -> None:
            raise RuntimeError("no")

        job_id = await app.enqueue(once)
        await app.run_worker(run_once=True)
        (dead,) = await app.dead_letter.list()
        assert (dead["id"], dead["reason"]) == (job_id, "Failed all 1 attempts.")
    assert policy.calls == []


async def test_a_broken_policy_falls_back_to_the_jobs_own_options(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    policy = Recording(RuntimeError("policy bug"), "soon", float("nan"), timedelta(seconds=90), -5)
    async with Soniq(database_url=database_url, retry_policy=policy) as app:

        @app.job(retries=1, retry_delay=12)
        async def fails(n: int) -> None:
            raise RuntimeError("x")

        with caplog.at_level(logging.ERROR, logger="soniq.worker"):
            ids = [await app.enqueue(fails, n=i) for i in range(5)]
            await app.run_worker(run_once=True, concurrency=1)
        # Raised, a string, NaN: the job's own 12 s. A timedelta counts.
        assert await delays(database_url, ids[:4]) == pytest.approx([12, 12, 12, 90], abs=1e-3)
        # Negative counts as 0: retried at once, within the same run, and buried.
        (dead,) = await app.dead_letter.list()
        assert (dead["id"], dead["attempts"]) == (ids[4], 2)
    assert "retry policy" in caplog.text and "policy bug" in caplog.text
    assert "returned 'soon'" in caplog.text


async def test_exponential_backoff_is_the_default_rule_as_a_policy(database_url: str) -> None:
    async with Soniq(database_url=database_url, retry_policy=ExponentialBackoff()) as app:

        @app.job(retries=3, retry_delay=3, retry_backoff=True)
        async def fails() -> None:
            raise RuntimeError("x")

        job_id = await app.enqueue(fails)
        await app.run_worker(run_once=True)
        assert await delays(database_url, [job_id]) == pytest.approx([3.0], abs=1e-3)


async def test_retry_policy_is_checked_and_frozen_once_initialised(database_url: str) -> None:
    with pytest.raises(SoniqError) as info:
        Soniq(database_url=database_url, retry_policy=object())  # type: ignore[arg-type]
    assert info.value.code == INVALID_ARGUMENT and "delay_for" in info.value.message

    app = Soniq(database_url=database_url)
    try:
        assert app.retry_policy is None
        app.retry_policy = ExponentialBackoff()  # before first use: fine
        await app.ensure_initialized()
        with pytest.raises(SoniqError) as frozen:
            app.retry_policy = None
        assert frozen.value.code == APP_FROZEN
        assert isinstance(app.retry_policy, ExponentialBackoff)
        await app.close()
        app.retry_policy = None  # closed: free again
        assert app.retry_policy is None
    finally:
        await app.close()


async def test_retry_jitter_must_be_a_bool(app: Soniq) -> None:
    with pytest.raises(SoniqError) as info:

        @app.job(retry_jitter="yes")  # type: ignore[arg-type]
        def nope() -> None: ...

    assert info.value.code == INVALID_JOB_OPTION and "retry_jitter" in info.value.message


def test_a_blocking_apps_worker_uses_its_retry_policy(database_url: str) -> None:
    policy = Recording(33)
    app = soniq_sync.Soniq(database_url=database_url, retry_policy=policy)
    try:

        @app.job(retries=2)
        def fails() -> None:
            raise RuntimeError("x")

        job_id = app.enqueue(fails)
        app.run_worker(run_once=True)
        with psycopg.connect(database_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT extract(epoch FROM scheduled_at - updated_at)::float8 FROM soniq_jobs "
                "WHERE id = %s",
                (job_id,),
            ).fetchone()
        assert row is not None and row[0] == pytest.approx(33.0, abs=1e-3)
        assert [call[0] for call in policy.calls] == [1]
    finally:
        app.close()


async def test_an_error_marked_not_retryable_is_dead_lettered_at_once(
    app: Soniq, database_url: str
) -> None:
    """``retryable = False`` on the exception skips the attempts left (the webhook
    delivery's refusals use it)."""

    class Refused(Exception):
        retryable = False

    @app.job(retries=3)
    async def refuse() -> None:
        raise Refused("the receiver said 404")

    job_id = await app.enqueue(refuse)
    report = await drain(app)
    assert report.dead_lettered == 1 and report.retried == 0
    job = await app.get_job(job_id)
    assert job is not None and job["status"] == "dead_letter"
    letters = await app.dead_letter.list()
    assert [d["reason"] for d in letters] == ["Not retryable: Refused: the receiver said 404"]
