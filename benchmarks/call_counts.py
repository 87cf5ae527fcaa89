"""Python function calls per job on Soniq's hot paths: a figure load cannot move.

Wall-clock rates on a shared 2-core machine move by 20% between two runs of the same
code; the number of Python calls a job costs does not. Run this on two trees to see
whether a change added work per job::

    python benchmarks/call_counts.py
    PYTHONPATH=/path/to/other/tree/src python benchmarks/call_counts.py

It profiles (cProfile), on a scratch database: a single ``enqueue`` on the app's pool,
an ``enqueue(connection=)`` in one transaction, ``enqueue_many`` of 10,000 rows, an
in-process drain (``run_worker(run_once=True, concurrency=64)``) and the pickup path
(one job enqueued, the running worker picks it up, the handler starts). For
instructions rather than calls, run it under ``valgrind --tool=callgrind``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
from collections.abc import Awaitable, Callable
from typing import Final

import psycopg
from support import Scratch, positive, run_timed

from soniq import Soniq

DEFAULT_URL: Final = "postgresql://postgres@127.0.0.1:5432/postgres"


async def calls(step: Callable[[], Awaitable[object]]) -> int:
    """The Python calls ``step`` makes (its own frame included)."""
    profile = cProfile.Profile()
    profile.enable()
    await step()
    profile.disable()
    return pstats.Stats(profile).total_calls  # type: ignore[attr-defined,no-any-return]


async def measure(url: str, jobs: int, pickups: int) -> dict[str, float]:
    """Calls per job on each path, against a fresh database at ``url``."""
    app = Soniq(database_url=url)
    started = asyncio.Event()

    @app.job(name="bench.noop")
    async def noop(x: int) -> None:
        started.set()

    await app.setup()
    figures: dict[str, float] = {}
    for i in range(20):  # warm the pool, prepared statements and caches
        await app.enqueue(noop, x=i)

    async def singles() -> None:
        for i in range(500):
            await app.enqueue(noop, x=i)

    figures["enqueue, app's pool"] = await calls(singles) / 500
    async with await psycopg.AsyncConnection.connect(url) as conn:
        for i in range(20):
            await app.enqueue(noop, x=i, connection=conn)

        async def in_transaction() -> None:
            for i in range(500):
                await app.enqueue(noop, x=i, connection=conn)

        figures["enqueue(connection=)"] = await calls(in_transaction) / 500
        await conn.commit()
    await app.run_worker(run_once=True, concurrency=64)  # empty the queue
    rows = [{"x": i} for i in range(jobs)]
    figures[f"enqueue_many, per row ({jobs:,})"] = (
        await calls(lambda: app.enqueue_many(noop, rows)) / jobs
    )
    figures[f"drain, run_once, per job ({jobs:,})"] = (
        await calls(lambda: app.run_worker(run_once=True, concurrency=64)) / jobs
    )

    worker = asyncio.ensure_future(app.run_worker(concurrency=4))

    async def one_at_a_time() -> None:
        for i in range(pickups):
            started.clear()
            await app.enqueue(noop, x=i)
            await asyncio.wait_for(started.wait(), 10)

    await one_at_a_time()  # the worker is listening and warm
    figures[f"pickup: enqueue -> handler ({pickups})"] = await calls(one_at_a_time) / pickups
    worker.cancel()
    await asyncio.gather(worker, return_exceptions=True)
    await app.close()
    return figures


async def main_async(opts: argparse.Namespace) -> int:
    scratch = Scratch(opts.database_url)
    try:
        url = await scratch.create()
        figures = await measure(url, opts.jobs, opts.pickups)
    finally:
        await scratch.drop_all()
    print(f"{'path':<44} {'Python calls per job':>22}")
    for name, value in figures.items():
        print(f"{name:<44} {value:>22.1f}")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--jobs", type=positive, default=10_000, help="rows per bulk step")
    parser.add_argument("--pickups", type=positive, default=200, help="jobs one at a time")
    raise SystemExit(run_timed(main_async(parser.parse_args())))


if __name__ == "__main__":
    main()
