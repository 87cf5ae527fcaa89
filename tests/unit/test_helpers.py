"""The polling helpers in tests/helpers.py."""

from __future__ import annotations

import time

import pytest

from tests.helpers import wait_for, wait_for_sync


async def test_wait_for_returns_first_truthy_value() -> None:
    calls: list[int] = []

    async def ready() -> int:
        calls.append(1)
        return len(calls) if len(calls) >= 3 else 0

    assert await wait_for(ready, timeout=5, interval=0) == 3


async def test_wait_for_times_out_with_message() -> None:
    with pytest.raises(AssertionError, match="the queue to drain"):
        await wait_for(lambda: False, timeout=0.05, message="the queue to drain")


def test_wait_for_sync() -> None:
    deadline = time.monotonic() + 0.05
    assert wait_for_sync(lambda: time.monotonic() >= deadline, timeout=5)
    with pytest.raises(AssertionError, match="timed out"):
        wait_for_sync(lambda: None, timeout=0.05)
