"""``Snooze`` on every backend: a frozen value a handler returns or raises, run by a
real worker (``drain``). A snooze never spends an attempt, is capped by
SONIQ_SNOOZE_MAX_SECONDS, and says so in ``last_error``."""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

from soniq import Snooze, Soniq, SoniqError
from soniq.errors import INVALID_ARGUMENT
from soniq.testing import drain


def test_snooze_is_a_frozen_value() -> None:
    snooze = Snooze(30, reason="rate limited")
    assert (snooze.seconds, snooze.reason) == (30.0, "rate limited")
    assert snooze == Snooze(30.0, "rate limited") and snooze != Snooze(30)
    assert hash(snooze) == hash(Snooze(30, "rate limited"))
    assert repr(snooze) == "Snooze(seconds=30.0, reason='rate limited')"
    assert pickle.loads(pickle.dumps(snooze)) == snooze
    with pytest.raises(dataclasses.FrozenInstanceError):
        snooze.seconds = 1  # type: ignore[misc]
    assert Snooze(-5).seconds == -5.0  # allowed: counts as 0 when the job is put back


@pytest.mark.parametrize("seconds", ["10", None, True, float("nan")])
def test_snooze_refuses_a_delay_that_is_not_a_number(seconds: object) -> None:
    with pytest.raises(SoniqError) as caught:
        Snooze(seconds)  # type: ignore[arg-type]
    assert caught.value.code == INVALID_ARGUMENT
    assert "number of seconds" in caught.value.message


def test_snooze_refuses_a_reason_that_is_not_text() -> None:
    with pytest.raises(SoniqError) as caught:
        Snooze(1, reason=42)  # type: ignore[arg-type]
    assert caught.value.code == INVALID_ARGUMENT


async def test_repeated_snoozes_never_spend_the_only_attempt(backend_app: Soniq) -> None:
    app = backend_app
    runs: list[int] = []

    @app.job(retries=0)  # max_attempts = 1
    async def polite() -> str | Snooze:
        runs.append(1)
        if len(runs) == 1:
            raise Snooze(0)
        if len(runs) <= 3:
            return Snooze(0, reason=f"try {len(runs)}")
        return "finally"

    job_id = await app.enqueue(polite)
    report = await drain(app)
    assert (report.snoozed, report.done, report.dead_lettered) == (3, 1, 0)
    assert len(runs) == 4
    job = await app.get_job(job_id)
    assert job is not None
    assert (job["status"], job["attempts"], job["max_attempts"]) == ("done", 1, 1)
    assert await app.get_result(job_id) == "finally"


async def test_last_error_says_snooze_and_the_reason(backend_app: Soniq) -> None:
    app = backend_app

    @app.job()
    async def with_reason() -> Snooze:
        return Snooze(600, reason="upstream busy")

    @app.job()
    async def without_reason() -> None:
        raise Snooze(600)

    with_id = await app.enqueue(with_reason)
    without_id = await app.enqueue(without_reason)
    assert (await drain(app)).snoozed == 2
    first, second = await app.get_job(with_id), await app.get_job(without_id)
    assert first is not None and second is not None
    assert (first["status"], first["attempts"], first["last_error"]) == (
        "queued",
        0,
        "SNOOZE: upstream busy",
    )
    assert (second["status"], second["attempts"], second["last_error"]) == (
        "queued",
        0,
        "SNOOZE",
    )
    assert first["scheduled_at"] > datetime.now(timezone.utc) + timedelta(seconds=500)


async def test_the_delay_is_capped_by_snooze_max_seconds(
    make_app: Callable[..., Soniq],
) -> None:
    app = make_app(snooze_max_seconds=60)
    assert app.settings.snooze_max_seconds == 60

    @app.job()
    async def sleepy() -> Snooze:
        return Snooze(10**9)

    job_id = await app.enqueue(sleepy)
    before = datetime.now(timezone.utc)
    assert (await drain(app)).snoozed == 1
    job = await app.get_job(job_id)
    assert job is not None
    assert job["scheduled_at"] <= datetime.now(timezone.utc) + timedelta(seconds=60)
    assert job["scheduled_at"] >= before + timedelta(seconds=55)


async def test_a_negative_delay_counts_as_zero(backend_app: Soniq) -> None:
    app = backend_app
    runs: list[int] = []

    @app.job()
    async def eager() -> Snooze | None:
        runs.append(1)
        return Snooze(-3600) if len(runs) == 1 else None

    job_id = await app.enqueue(eager)
    # Without skip_delays: the snoozed job is due at once, so the same drain runs it.
    report = await drain(app)
    assert (report.snoozed, report.done) == (1, 1)
    job = await app.get_job(job_id)
    assert job is not None and job["status"] == "done"
    assert job["scheduled_at"] >= job["created_at"]  # not put in the past


async def test_snooze_max_seconds_is_checked(make_app: Callable[..., Soniq]) -> None:
    with pytest.raises(SoniqError) as caught:
        make_app(snooze_max_seconds=-1)
    assert caught.value.code == "SONIQ_INVALID_SETTING"
    assert "SONIQ_SNOOZE_MAX_SECONDS" in caught.value.message
