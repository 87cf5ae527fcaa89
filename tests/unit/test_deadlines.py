"""The job-timeout watchdog: overdue handlers are cancelled, finished ones never, and
every cancellation it makes says why."""

from __future__ import annotations

import asyncio
import contextlib

from soniq.worker.deadlines import Deadlines, Stop


async def test_an_overdue_task_is_cancelled_and_reported_as_fired() -> None:
    deadlines = Deadlines()
    task = asyncio.create_task(asyncio.sleep(30))
    token = deadlines.arm(task, 0)  # type: ignore[arg-type]
    deadlines.expire()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert deadlines.disarm(task, token) is Stop.TIMED_OUT  # type: ignore[arg-type]


async def test_a_disarmed_task_is_left_alone_and_forgotten() -> None:
    deadlines = Deadlines()
    task = asyncio.create_task(asyncio.sleep(0))
    token = deadlines.arm(task, 0)  # type: ignore[arg-type]
    assert deadlines.disarm(task, token) is None  # type: ignore[arg-type]
    deadlines.expire()
    await task
    assert not task.cancelled()
    assert not deadlines._armed and not deadlines._fired


async def test_a_stale_token_cannot_disarm_a_newer_deadline() -> None:
    deadlines = Deadlines()
    task = asyncio.create_task(asyncio.sleep(30))
    old = deadlines.arm(task, 60)  # type: ignore[arg-type]
    deadlines.arm(task, 0)  # type: ignore[arg-type]
    deadlines.disarm(task, old)  # type: ignore[arg-type]
    deadlines.expire()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_an_interrupted_task_is_cancelled_and_reported_as_interrupted() -> None:
    deadlines = Deadlines()
    task = asyncio.create_task(asyncio.sleep(30))
    token = deadlines.arm(task, 60)  # type: ignore[arg-type]
    assert deadlines.interrupt(task) is True  # type: ignore[arg-type]
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert deadlines.disarm(task, token) is Stop.INTERRUPTED  # type: ignore[arg-type]
    assert not deadlines._armed and not deadlines._fired


async def test_an_unarmed_task_is_not_interrupted() -> None:
    deadlines = Deadlines()
    task = asyncio.create_task(asyncio.sleep(0))
    assert deadlines.interrupt(task) is False  # type: ignore[arg-type]
    await task
    assert not task.cancelled()
