"""Does a paused queue's backlog slow the other queues down?

Run it against a server on which it may create and drop a database::

    python benchmarks/head_of_line.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
    python benchmarks/head_of_line.py --quick      # smoke run

Each round drains ``--jobs`` no-op jobs of queue ``b`` with
``app.run_worker(run_once=True, concurrency=64)`` in this process, in three cases:

1. ``b`` alone in the table (the reference);
2. ``--backlog`` jobs of queue ``a``, all *older* than ``b``'s (ahead of them in claim
   order), and ``a`` paused;
3. the same backlog, nothing paused, and a worker given ``queues=["b"]``;
4. and 5. cases 2 and 3 with the index by queue (``app.queues.add_index()``), which
   the worker then claims from queue by queue.

Without the index, cases 2 and 3 walk ``a``'s rows in the claim index on every claim.
The script prints each case's rate and its ratio to case 1. Loading (COPY, the index
and ``VACUUM ANALYZE``) is not timed.

Then what the index costs when it is there: ``enqueue_many`` of 1,000 and 10,000 rows
and 300 single ``enqueue`` calls into an empty table, and the drain of case 1, each
timed with and without the index, interleaved (``--cost-rounds``; medians). It prints
figures and never fails on a slow result.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone

import psycopg
from support import Scratch, loadavg, positive, run_timed

from soniq import Soniq
from soniq.enqueue.ids import new_job_ids

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("SONIQ_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--jobs", type=positive, default=20_000, help="jobs of queue b")
    parser.add_argument("--backlog", type=positive, default=500_000, help="older jobs of a")
    parser.add_argument("--rounds", type=positive, default=3)
    parser.add_argument("--cost-rounds", type=positive, default=7)
    parser.add_argument("--quick", action="store_true", help="5,000 jobs, 50,000 backlog, 1 round")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.backlog, args.rounds, args.cost_rounds = 5_000, 50_000, 1, 1
    return args


async def copy_jobs(url: str, queue: str, count: int, at: datetime) -> None:
    """COPY ``count`` no-op jobs of ``queue``, due since ``at``."""
    lines = "".join(
        f"{job_id}\tbench.noop\t{{}}\t{queue}\t{at.isoformat()}\n" for job_id in new_job_ids(count)
    )
    async with (
        await psycopg.AsyncConnection.connect(url, autocommit=True) as conn,
        conn.cursor() as cur,
        cur.copy("COPY soniq_jobs (id, job_name, args, queue, scheduled_at) FROM STDIN") as copy,
    ):
        await copy.write(lines)


async def empty(url: str, index: bool) -> None:
    """An empty jobs table, no pause, and the index by queue or not."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("TRUNCATE soniq_jobs")
        await conn.execute("DELETE FROM soniq_queues")
    async with Soniq(database_url=url) as app:
        await (app.queues.add_index() if index else app.queues.drop_index())


async def one_round(
    url: str, args: argparse.Namespace, case: int, index: bool | None = None
) -> float:
    """Set up ``case`` on an empty table, drain queue b; jobs per second. ``index``:
    with the index by queue or without it (default: cases 4 and 5 have it)."""
    await empty(url, index=case >= 4 if index is None else index)
    now = datetime.now(timezone.utc)
    if case > 1:
        await copy_jobs(url, "a", args.backlog, now - timedelta(hours=1))
    await copy_jobs(url, "b", args.jobs, now - timedelta(minutes=1))
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("VACUUM ANALYZE soniq_jobs")
    app = Soniq(database_url=url)

    @app.job(name="bench.noop")
    async def noop() -> None: ...

    try:
        if case in (2, 4):
            await app.queues.pause("a", wait=False)
        queues = ["b"] if case in (3, 5) else None
        started = time.perf_counter()
        await app.run_worker(concurrency=64, run_once=True, queues=queues)
        elapsed = time.perf_counter() - started
    finally:
        await app.close()
    return float(args.jobs / elapsed)


async def cost_round(url: str, index: bool) -> dict[str, float]:
    """Seconds for enqueue_many of 1,000 and 10,000 rows and 300 single enqueues into
    an empty table, with the index by queue or without."""
    times: dict[str, float] = {}
    app = Soniq(database_url=url)

    @app.job(name="bench.noop")
    async def noop(x: int) -> None: ...

    try:
        for size in (1_000, 10_000):
            await empty(url, index)
            started = time.perf_counter()
            await app.enqueue_many(noop, [{"x": i} for i in range(size)])
            times[f"enqueue_many {size:,}"] = time.perf_counter() - started
        await empty(url, index)
        started = time.perf_counter()
        for i in range(300):
            await app.enqueue(noop, x=i)
        times["300 x enqueue"] = time.perf_counter() - started
    finally:
        await app.close()
    return times


async def costs(url: str, args: argparse.Namespace) -> None:
    """What the index by queue costs writers (and the drain), against no index."""
    seconds: dict[bool, dict[str, list[float]]] = {False: {}, True: {}}
    for round_no in range(args.cost_rounds):
        order = (False, True) if round_no % 2 == 0 else (True, False)
        for index in order:
            for name, took in (await cost_round(url, index)).items():
                seconds[index].setdefault(name, []).append(took)
            drain = args.jobs / await one_round(url, args, 1, index=index)
            seconds[index].setdefault(f"drain {args.jobs:,} (no backlog)", []).append(drain)
    print(f"\nthe index by queue's cost (median of {args.cost_rounds}; under 100%: slower with it)")
    for name, without in seconds[False].items():
        plain, indexed = statistics.median(without), statistics.median(seconds[True][name])
        print(
            f"  {name:<30} {plain * 1e3:9.1f} ms  with the index {indexed * 1e3:9.1f} ms"
            f"  {plain / indexed:6.1%} of the speed"
        )


async def main_async(args: argparse.Namespace) -> int:
    scratch = Scratch(args.database_url)
    try:
        url = await scratch.create()
        async with Soniq(database_url=url) as app:
            await app.setup()
        print(f"load average at the start: {loadavg()}")
        names = {
            1: "b alone",
            2: f"b behind {args.backlog:,} older jobs of a, a paused",
            3: f"b behind {args.backlog:,} older jobs of a, worker --queues b",
            4: "case 2 with the index by queue",
            5: "case 3 with the index by queue",
        }
        rates: dict[int, list[float]] = {case: [] for case in names}
        for round_no in range(1, args.rounds + 1):
            for case in names:  # interleaved, so that load drifts hit every case alike
                rate = await one_round(url, args, case)
                rates[case].append(rate)
                print(f"  round {round_no} case {case}: {rate:,.0f} jobs/s", flush=True)
        base = statistics.median(rates[1])
        print(f"\ndrain {args.jobs:,} jobs of queue b, concurrency 64 (median of {args.rounds})")
        for case, name in names.items():
            rate = statistics.median(rates[case])
            print(f"  {case}  {name:<55} {rate:>9,.0f} jobs/s  {rate / base:6.0%} of case 1")
        await costs(url, args)
        print(f"load average at the end: {loadavg()}")
    finally:
        await scratch.drop_all()
    return 0


if __name__ == "__main__":
    sys.exit(run_timed(main_async(parse_args())))
