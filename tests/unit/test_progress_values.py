"""What ctx.progress stores: the JSON value a report becomes (soniq.worker.progress)."""

from __future__ import annotations

import json

import pytest

from soniq.errors import INVALID_ARGUMENT, SoniqError
from soniq.worker.progress import encode_progress


def test_a_report_becomes_a_small_json_object() -> None:
    text = encode_progress(2, 3, 4, "page 3", {"url": "/x", "ü": [1, None]})
    assert json.loads(text) == {
        "current": 3,
        "total": 4,
        "fraction": 0.75,
        "message": "page 3",
        "data": {"url": "/x", "ü": [1, None]},
        "attempt": 2,
    }
    assert "ü" in text and " " not in text.replace("page 3", "")  # compact, not escaped


@pytest.mark.parametrize(
    ("current", "total", "fraction"),
    [(None, None, None), (5, None, None), (None, 10, None), (0, 10, 0.0), (15, 10, 1.5)],
)
def test_fraction_needs_both_and_is_not_clamped(
    current: float | None, total: float | None, fraction: float | None
) -> None:
    assert json.loads(encode_progress(1, current, total, None, None))["fraction"] == fraction


def test_big_whole_numbers_are_kept_exactly() -> None:
    assert json.loads(encode_progress(1, 10**30, None, None, None))["current"] == 10**30


@pytest.mark.parametrize("bad", [True, -0.5, float("nan"), float("-inf"), "1", [1]])
def test_current_must_be_a_finite_number_at_least_zero(bad: object) -> None:
    with pytest.raises(SoniqError) as raised:
        encode_progress(1, bad, None, None, None)
    assert raised.value.code == INVALID_ARGUMENT
    assert "current=" in raised.value.message and "Pass" in raised.value.message


@pytest.mark.parametrize("bad", [0, -1, False, float("inf")])
def test_total_must_be_above_zero(bad: object) -> None:
    with pytest.raises(SoniqError) as raised:
        encode_progress(1, None, bad, None, None)
    assert raised.value.code == INVALID_ARGUMENT and "total=" in raised.value.message
