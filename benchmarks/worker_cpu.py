"""Where a drained job's CPU goes: the ``soniq worker`` process and its PostgreSQL backends.

Wall-clock throughput on a busy or 2-core machine moves with everything else that
runs there. CPU time per job does much less, so this is the figure to compare when
changing the worker's hot path::

    python benchmarks/worker_cpu.py                 # 50,000 jobs, concurrency 64
    python benchmarks/worker_cpu.py --jobs 20000 --rounds 3

It starts an idle ``soniq worker`` (the jobs of benchmarks/worker.py: a JobContext
parameter, two hooks, the default timeout), notes the CPU time of the worker and of
each of its server backends, bulk-enqueues the jobs, waits until all are done, and
prints microseconds of CPU per job for each side, with the wall-clock rate beside it.
Backend CPU comes from ``/proc/<pid>/stat``, so the server must run on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

import psycopg
from support import Scratch, loadavg, positive
from worker import SONIQ_JOBS, child_env, named_url, subprocess_worker

from soniq import Soniq

DEFAULT_URL: Final = "postgresql://postgres@127.0.0.1:5432/postgres"
APP_NAME: Final = "soniq_cpu_worker"
TICKS: Final = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, in seconds (0 once it has exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


async def backend_pids(url: str) -> list[int]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (APP_NAME,)
        )
        return [row[0] for row in await cur.fetchall()]


async def one_round(url: str, workdir: Path, jobs: int, concurrency: int) -> dict[str, float]:
    env = child_env(
        workdir,
        SONIQ_DATABASE_URL=named_url(url, APP_NAME),
        SONIQ_JOBS_MODULES="soniq_bench_jobs",
        SONIQ_LOG_LEVEL="WARNING",
    )
    argv = [sys.executable, "-m", "soniq", "worker", "--concurrency", str(concurrency)]
    log = workdir / "worker.log"
    async with (
        subprocess_worker(argv, env, workdir, log) as proc,
        await psycopg.AsyncConnection.connect(url, autocommit=True) as poll,
    ):
        deadline = time.monotonic() + 30
        while not (await (await poll.execute("SELECT count(*) FROM soniq_workers")).fetchone())[0]:
            if time.monotonic() > deadline:
                raise RuntimeError("the worker did not register:\n" + log.read_text()[-2000:])
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # let the pool open its connections
        pids = await backend_pids(url)
        before = {pid: cpu_seconds(pid) for pid in [proc.pid, *pids]}
        app = Soniq(database_url=url, enqueue_validation="none")  # a producer, by name
        try:
            start = time.perf_counter()
            await app.enqueue_many("bench.noop", [{"x": i} for i in range(jobs)])
            while True:
                cur = await poll.execute("SELECT count(*) FROM soniq_jobs WHERE status = 'done'")
                done = (await cur.fetchone())[0]  # type: ignore[index]
                if done >= jobs:
                    break
                # Rarely: each count scans the table, on the same two cores.
                await asyncio.sleep(0.01 if jobs - done < 2_000 else 0.25)
            seconds = time.perf_counter() - start
        finally:
            await app.close()
        new = [pid for pid in await backend_pids(url) if pid not in before]
        worker_cpu = cpu_seconds(proc.pid) - before[proc.pid]
        backends = sum(max(0.0, cpu_seconds(pid) - before[pid]) for pid in pids)
        backends += sum(cpu_seconds(pid) for pid in new)
    return {
        "rate": jobs / seconds,
        "worker_us": worker_cpu / jobs * 1e6,
        "server_us": backends / jobs * 1e6,
    }


async def main_async(opts: argparse.Namespace) -> None:
    scratch = Scratch(opts.database_url)
    print(f"load {loadavg()}; {opts.jobs:,} jobs, concurrency {opts.concurrency}", flush=True)
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="soniq-cpu-") as tmp:
            workdir = Path(tmp)
            (workdir / "soniq_bench_jobs.py").write_text(SONIQ_JOBS)
            for n in range(opts.rounds):
                url = await scratch.create()
                app = Soniq(database_url=url)
                await app.setup()
                await app.close()
                r = await one_round(url, workdir, opts.jobs, opts.concurrency)
                results.append(r)
                print(
                    f"round {n + 1}: {r['rate']:,.0f} jobs/s; CPU per job: worker "
                    f"{r['worker_us']:.1f} us, server {r['server_us']:.1f} us, total "
                    f"{r['worker_us'] + r['server_us']:.1f} us",
                    flush=True,
                )
                await scratch.drop_all()
    finally:
        await scratch.drop_all()
    if len(results) > 1:
        med = {k: statistics.median(r[k] for r in results) for k in results[0]}
        print(
            f"median: {med['rate']:,.0f} jobs/s; worker {med['worker_us']:.1f} us, "
            f"server {med['server_us']:.1f} us per job; load {loadavg()}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("SONIQ_BENCH_URL", DEFAULT_URL))
    parser.add_argument("--jobs", type=positive, default=50_000)
    parser.add_argument("--concurrency", type=positive, default=64)
    parser.add_argument("--rounds", type=positive, default=1)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
