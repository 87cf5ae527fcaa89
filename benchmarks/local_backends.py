"""What the SQLite and in-memory backends sustain: enqueue rates and a worker's drain rate.

    python benchmarks/local_backends.py [--jobs 20000] [--backends memory,sqlite]

For each backend: ``enqueue()`` one job at a time, ``enqueue_many()`` in batches of
1,000, then one in-process worker (``run_worker(run_once=True)``, concurrency 16) runs
every queued no-op job. These backends are for development and tests; the figures say
how far a test suite or a demo can lean on them, not how they compare with PostgreSQL.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from support import loadavg, positive, run_timed

from soniq import Soniq

BATCH = 1000
CONCURRENCY = 16


async def measure(kind: str, jobs: int, folder: Path) -> None:
    """Print the three rates of one backend."""
    if kind == "memory":
        app = Soniq(backend="memory")
    else:
        app = Soniq(database_url=f"sqlite:///{folder / 'bench.db'}")

    @app.job(name="bench.noop")
    async def noop(n: int) -> None:
        return None

    try:
        singles = min(jobs, 5000)
        started = time.perf_counter()
        for n in range(singles):
            await app.enqueue(noop, n=n)
        single_rate = singles / (time.perf_counter() - started)

        started = time.perf_counter()
        for first in range(0, jobs, BATCH):
            await app.enqueue_many(noop, [{"n": n} for n in range(first, min(jobs, first + BATCH))])
        many_rate = jobs / (time.perf_counter() - started)

        queued = singles + jobs
        started = time.perf_counter()
        await app.run_worker(concurrency=CONCURRENCY, run_once=True)
        drain_seconds = time.perf_counter() - started
        done = (await app.get_queue_stats())["done"]
        assert done == queued, f"{done} of {queued} jobs done"
        print(
            f"{kind:<7} enqueue {single_rate:>9,.0f}/s   enqueue_many {many_rate:>9,.0f}/s   "
            f"drain {queued / drain_seconds:>9,.0f} jobs/s ({queued:,} jobs)",
            flush=True,
        )
    finally:
        await app.close()


async def main(opts: argparse.Namespace) -> int:
    """Measure each backend asked for, in a scratch folder."""
    print(f"load average at start: {loadavg()}")
    with tempfile.TemporaryDirectory(prefix="soniq-bench-") as folder:
        for kind in opts.backends.split(","):
            await measure(kind.strip(), opts.jobs, Path(folder))
    print(f"load average at end: {loadavg()}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=positive, default=20_000, help="jobs for enqueue_many")
    parser.add_argument("--backends", default="memory,sqlite", help="comma-separated")
    raise SystemExit(run_timed(main(parser.parse_args())))
