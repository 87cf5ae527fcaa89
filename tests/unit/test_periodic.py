"""@app.periodic: a normal job plus a schedule, checked at declaration (no database)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import soniq_sync
from soniq import JobContext, Soniq, SoniqError, daily, every
from soniq.errors import (
    CRON_OR_EVERY,
    INVALID_CRON,
    INVALID_INTERVAL,
    INVALID_JOB_OPTION,
    INVALID_TIMEZONE,
)


def test_periodic_registers_a_job_and_records_its_schedule(app: Soniq) -> None:
    @app.periodic(cron=daily().at("09:00"), name="reports.daily", queue="reports")
    async def daily_report(ctx: JobContext) -> None: ...

    @app.periodic(every=timedelta(seconds=30), name="metrics.flush", timezone="Europe/Berlin")
    def flush_metrics(limit: int = 10) -> None: ...

    @app.periodic(every=every(45).seconds(), catch_up=True)
    def unnamed() -> None: ...

    spec = app.registry.get("reports.daily")
    assert spec is not None and spec.func is daily_report and spec.queue == "reports"
    assert app.periodic_jobs["reports.daily"].rule.cron == "0 9 * * *"
    flush = app.periodic_jobs["metrics.flush"]
    assert flush.rule.interval == timedelta(seconds=30) and flush.rule.timezone == "Europe/Berlin"
    (derived,) = [p for n, p in app.periodic_jobs.items() if n.endswith("unnamed")]
    assert derived.catch_up is True and derived.rule.interval == timedelta(seconds=45)
    assert app.registry.for_function(unnamed) is not None


def test_the_blocking_app_has_periodic_too() -> None:
    app = soniq_sync.Soniq()

    @app.periodic(cron="*/5 * * * *", name="sync.tick")
    def tick() -> None: ...

    assert app.periodic_jobs["sync.tick"].rule.cron == "*/5 * * * *"


def _handler() -> None: ...


def _needs_args(user_id: int) -> None: ...


@pytest.mark.parametrize(
    ("kwargs", "func", "code"),
    [
        ({}, _handler, CRON_OR_EVERY),
        ({"cron": "* * * * *", "every": 5}, _handler, CRON_OR_EVERY),
        ({"cron": "0 25 * * *"}, _handler, INVALID_CRON),
        ({"cron": every(30).seconds()}, _handler, INVALID_CRON),
        ({"every": 0}, _handler, INVALID_INTERVAL),
        ({"every": "*/5 * * * *"}, _handler, INVALID_INTERVAL),
        ({"cron": "* * * * *", "timezone": "Nowhere/Land"}, _handler, INVALID_TIMEZONE),
        ({"cron": "* * * * *", "catch_up": "yes"}, _handler, INVALID_JOB_OPTION),
        ({"cron": "* * * * *", "colour": "red"}, _handler, INVALID_JOB_OPTION),
        ({"cron": "* * * * *", "retries": 1, "max_retries": 2}, _handler, INVALID_JOB_OPTION),
        ({"cron": "* * * * *"}, _needs_args, INVALID_JOB_OPTION),
    ],
)
def test_bad_declarations_raise_and_register_nothing(
    app: Soniq, kwargs: dict[str, Any], func: Any, code: str
) -> None:
    with pytest.raises(SoniqError) as info:
        app.periodic(name="bad.one", **kwargs)(func)
    assert info.value.code == code
    assert len(app.registry) == 0 and not app.periodic_jobs


def test_periodic_must_be_called(app: Soniq) -> None:
    with pytest.raises(SoniqError) as info:
        app.periodic(_handler)  # type: ignore[call-arg]
    assert info.value.code == INVALID_JOB_OPTION
    assert "@app.periodic(" in info.value.message
