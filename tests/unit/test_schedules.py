"""The cron-string DSL (soniq.recurring.schedules) and the recurrence rules behind it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import soniq
import soniq.schedules
from soniq import SoniqError, cron, daily, every, monthly, weekly
from soniq.errors import CRON_OR_EVERY, INVALID_CRON, INVALID_INTERVAL, INVALID_TIMEZONE
from soniq.recurring.recurrence import Recurrence, decide, recurrence

UTC = timezone.utc
BERLIN = "Europe/Berlin"


def test_the_spec_table() -> None:
    assert every(5).minutes() == "*/5 * * * *"
    assert every(2).hours() == "0 */2 * * *"
    assert every(30).seconds() == timedelta(seconds=30)
    assert daily().at("09:00") == "0 9 * * *"
    assert weekly().on("monday").at("09:00") == "0 9 * * 1"
    assert monthly().on_day(15).at("12:00") == "0 12 15 * *"
    assert cron("*/15 * * * *") == "*/15 * * * *"


def test_terminals_are_plain_strings_and_reexported() -> None:
    assert type(daily().at("23:59")) is str
    assert daily().at("7:05") == "5 7 * * *"
    assert weekly().on("Sun").at("00:00") == "0 0 * * 0"
    assert weekly().on("saturday").at("18:30") == "30 18 * * 6"
    assert str(daily()) == "0 0 * * *"
    assert soniq.schedules.every is every
    for name in ("cron", "daily", "every", "monthly", "weekly"):
        assert name in soniq.__all__


@pytest.mark.parametrize(
    "make",
    [
        lambda: daily().at("25:00"),
        lambda: daily().at("12:60"),
        lambda: daily().at("9"),
        lambda: daily().at(900),
        lambda: weekly().on("funday"),
        lambda: weekly().on(8),
        lambda: weekly().on(-1),
        lambda: weekly().on(True),
        lambda: weekly().on(1.0),
        lambda: every(32).days(),
        lambda: cron(5),
        lambda: monthly().on_day(32),
        lambda: monthly().on_day(0),
        lambda: monthly().on_day(True),
        lambda: every(0),
        lambda: every(-3),
        lambda: every(1.5),
        lambda: every(60).minutes(),
        lambda: every(24).hours(),
        lambda: cron("* * * *"),
        lambda: cron("* * * * * *"),
        lambda: cron("61 * * * *"),
        lambda: cron("@daily"),
        lambda: cron("0 0 30 2 *"),
        lambda: cron("not a cron at all"),
    ],
)
def test_bad_input_fails_at_declaration(make: Any) -> None:
    with pytest.raises(SoniqError) as info:
        make()
    assert info.value.code == INVALID_CRON
    assert info.value.message


def test_recurrence_checks_its_parts() -> None:
    assert recurrence(cron=daily().at("09:00")).cron == "0 9 * * *"
    assert recurrence(cron=weekly().on("monday")).cron == "0 0 * * 1"  # a builder's str()
    assert recurrence(every=90).interval == timedelta(seconds=90)
    assert recurrence(every=every(30).seconds(), timezone=BERLIN).timezone == BERLIN
    cases = [
        ({}, CRON_OR_EVERY),
        ({"cron": "* * * * *", "every": 5}, CRON_OR_EVERY),
        ({"every": 0}, INVALID_INTERVAL),
        ({"every": -1.0}, INVALID_INTERVAL),
        ({"every": float("inf")}, INVALID_INTERVAL),
        ({"every": "*/5 * * * *"}, INVALID_INTERVAL),
        ({"every": True}, INVALID_INTERVAL),
        ({"cron": timedelta(seconds=5)}, INVALID_CRON),
        ({"cron": 5}, INVALID_CRON),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, INVALID_TIMEZONE),
        ({"cron": "* * * * *", "timezone": ""}, INVALID_TIMEZONE),
        ({"cron": "* * * * *", "timezone": "../etc/passwd"}, INVALID_TIMEZONE),
    ]
    for kwargs, code in cases:
        with pytest.raises(SoniqError) as info:
            recurrence(**kwargs)
        assert info.value.code == code, kwargs


def berlin(*args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(BERLIN), fold=fold)  # type: ignore[misc]


def runs(rule: Recurrence, start: datetime, end: datetime) -> list[datetime]:
    out, t = [], start
    while True:
        t = rule.next_after(t)
        if t >= end:
            return out
        out.append(t)


def test_daily_cron_across_spring_forward_in_berlin() -> None:
    # 2024-03-31: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day.
    rule = recurrence(cron="30 2 * * *", timezone=BERLIN)
    got = runs(rule, berlin(2024, 3, 29, 12), berlin(2024, 4, 2, 12))
    assert [t.astimezone(ZoneInfo(BERLIN)).strftime("%d %H:%M %Z") for t in got] == [
        "30 02:30 CET",
        "31 03:30 CEST",  # once, shifted by the jump
        "01 02:30 CEST",
        "02 02:30 CEST",
    ]


def test_daily_cron_across_fall_back_in_berlin() -> None:
    # 2024-10-27: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    rule = recurrence(cron="30 2 * * *", timezone=BERLIN)
    got = runs(rule, berlin(2024, 10, 25, 12), berlin(2024, 10, 28, 12))
    assert [t.astimezone(ZoneInfo(BERLIN)).strftime("%d %H:%M %Z") for t in got] == [
        "26 02:30 CEST",
        "27 02:30 CEST",  # the first of the two, only
        "28 02:30 CET",
    ]


def test_sub_hourly_cron_has_no_double_or_missing_run_across_both_changes() -> None:
    rule = recurrence(cron="*/15 * * * *", timezone=BERLIN)
    spring = runs(rule, berlin(2024, 3, 31, 1, 30), berlin(2024, 3, 31, 4, 0))
    walls = [t.astimezone(ZoneInfo(BERLIN)).strftime("%H:%M") for t in spring]
    assert walls == ["01:45", "03:00", "03:15", "03:30", "03:45"]
    assert len(set(spring)) == len(spring)
    autumn = runs(rule, berlin(2024, 10, 27, 1, 30), berlin(2024, 10, 27, 3, 30))
    walls = [t.astimezone(ZoneInfo(BERLIN)).strftime("%H:%M %Z") for t in autumn]
    # Each wall-clock time once: the repeated 02:00-02:45 CET is not run again.
    assert walls == [
        "01:45 CEST",
        "02:00 CEST",
        "02:15 CEST",
        "02:30 CEST",
        "02:45 CEST",
        "03:00 CET",
        "03:15 CET",
    ]
    assert autumn == sorted(autumn)


def test_next_run_from_inside_the_repeated_hour_does_not_go_back() -> None:
    rule = recurrence(cron="*/15 * * * *", timezone=BERLIN)
    inside = berlin(2024, 10, 27, 2, 10, fold=1)  # second pass, CET
    nxt = rule.next_after(inside)
    assert nxt > inside
    assert nxt.astimezone(ZoneInfo(BERLIN)).strftime("%H:%M %Z") == "03:00 CET"


def test_interval_keeps_its_phase() -> None:
    rule = recurrence(every=10)
    anchor = datetime(2024, 1, 1, tzinfo=UTC)
    assert rule.next_after(anchor, anchor=anchor) == anchor + timedelta(seconds=10)
    later = anchor + timedelta(seconds=35)
    assert rule.next_after(later, anchor=anchor) == anchor + timedelta(seconds=40)
    assert rule.next_after(later) == later + timedelta(seconds=10)


def test_decide_fires_late_runs_within_grace_and_skips_older_ones() -> None:
    rule = recurrence(every=60)
    due = datetime(2024, 1, 1, 12, tzinfo=UTC)
    late = decide(rule, due, due + timedelta(seconds=5), grace=30, catch_up=False)
    assert late.fire_at == due and late.next_run_at == due + timedelta(seconds=60)
    now = due + timedelta(hours=3, seconds=20)
    missed = decide(rule, due, now, grace=30, catch_up=False)
    assert missed.fire_at is None
    assert now < missed.next_run_at <= now + timedelta(seconds=60)
    caught = decide(rule, due, now, grace=30, catch_up=True)
    assert caught.fire_at == due and caught.next_run_at == due + timedelta(seconds=60)
