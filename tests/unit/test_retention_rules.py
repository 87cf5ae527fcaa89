"""Retention rules without a database: durations, the prune age and the CLI's duration text."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest

from soniq.cli.durations import format_duration, parse_duration
from soniq.errors import INVALID_DURATION, RETENTION_OFF, SoniqError
from soniq.ops.retention import LONGEST_AGE, prune_age
from soniq.settings import SoniqSettings


def settings(**overrides: Any) -> SoniqSettings:
    return SoniqSettings.load(environ={}, **overrides)


@pytest.mark.parametrize(
    ("retention", "ttl", "older_than", "expected"),
    [
        (3600.0, 300.0, None, 3600.0),  # the defaults: retention wins
        (60.0, 300.0, None, 300.0),  # a result outlives a shorter retention
        (0.0, 300.0, None, 300.0),  # 0: as soon as the result TTL allows
        (0.0, 0.0, None, 0.0),
        (3600.0, 300.0, 7200, 7200.0),  # older_than replaces the retention...
        (3600.0, 300.0, 10, 300.0),  # ...but not the result TTL
        (3600.0, 300.0, timedelta(hours=3), 10800.0),
        (None, 300.0, 900.5, 900.5),  # retention off: older_than still works
        (3600.0, 300.0, 1e12, LONGEST_AGE),  # capped to fit an interval
    ],
)
def test_prune_age(
    retention: float | None, ttl: float, older_than: object, expected: float
) -> None:
    rules = settings(finished_job_retention=retention, result_ttl=ttl)
    assert prune_age(rules, older_than) == expected


@pytest.mark.parametrize(
    "bad", [-1, -0.5, math.nan, math.inf, "2h", True, timedelta(seconds=-1), [5], object()]
)
def test_prune_age_rejects_bad_durations(bad: object) -> None:
    with pytest.raises(SoniqError) as info:
        prune_age(settings(), bad)
    assert info.value.code == INVALID_DURATION
    assert "older_than" in info.value.message


def test_prune_age_without_retention_or_older_than() -> None:
    with pytest.raises(SoniqError) as info:
        prune_age(settings(finished_job_retention=None))
    assert info.value.code == RETENTION_OFF
    assert "--older-than" in info.value.message


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("90", 90.0),
        ("2.5", 2.5),
        ("90s", 90.0),
        ("15m", 900.0),
        ("2h", 7200.0),
        ("7d", 604800.0),
        ("1w", 604800.0),
        ("1h30m", 5400.0),
        (" 1H 30M ", 5400.0),
        ("1d12h", 129600.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text, "--older-than") == seconds


@pytest.mark.parametrize("text", ["", " ", "2x", "-5", "h", "1h30", "1.h", "2 hours", "9" * 400])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(SoniqError) as info:
        parse_duration(text, "--older-than")
    assert info.value.code == INVALID_DURATION
    assert info.value.message.startswith("--older-than")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0.25, "0.2s"),
        (9.96, "10.0s"),
        (42.7, "42s"),
        (185, "3m05s"),
        (7800, "2h10m"),
        (3 * 86400 + 4 * 3600 + 59, "3d4h"),
    ],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text
