"""Retention under sustained load: does ``soniq_jobs`` stay bounded while workers prune?

Run it against a server on which it may create and drop databases::

    python benchmarks/retention.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
    python benchmarks/retention.py --quick      # smoke run: 20,000 jobs

For each case a producer in this process enqueues ``--jobs`` no-op jobs at a steady
``--rate`` (``enqueue_many`` in slices, ten times a second) while one ``soniq worker``
subprocess runs them. Every ``--sample-every`` seconds the script records the rows in
``soniq_jobs`` (all, and the finished ones) and ``pg_total_relation_size('soniq_jobs')``.
Cases:

1. **Retention on**: ``SONIQ_FINISHED_JOB_RETENTION=--retention``, ``SONIQ_RESULT_TTL=0``,
   ``SONIQ_PRUNE_INTERVAL=--prune-interval``. After the last job is done the script
   samples on for the retention plus two prune intervals, to show the tail going too.
2. **Retention off** (skipped with ``--no-contrast``): the same load with
   ``SONIQ_FINISHED_JOB_RETENTION=off``, for comparison.

Each case uses a scratch database ``soniq_bench_<random>`` that is dropped at the end,
also after an error or Ctrl-C. Deleted rows leave dead tuples whose space only VACUUM
makes reusable: autovacuum does that in production (with the per-table settings of
Soniq's migration). On a server running with ``autovacuum = off`` the script runs a
plain ``VACUUM soniq_jobs`` every ``--vacuum-every`` seconds (10 by default there, never
otherwise) in both cases, and says so. The script only prints figures; it never fails
on a result.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import signal
import sys
import tempfile
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import psycopg
from support import Scratch, loadavg, positive, run_timed

import soniq
from soniq import Soniq
from soniq.storage.urls import normalise_database_url

DEFAULT_URL: Final = "postgresql://postgres@127.0.0.1:5432/postgres"
JOBS_MODULE: Final = "soniq_bench_retention_jobs"
STOP_TIMEOUT: Final = 30.0
TICK: Final = 0.1  # the producer enqueues a slice this often

SONIQ_JOBS: Final = '''\
"""Jobs for benchmarks/retention.py (written to a temporary directory)."""

from soniq import Soniq

app = Soniq()


@app.job(name="bench.noop")
async def noop(x: int) -> None:
    return None
'''

SAMPLE_SQL: Final = """
SELECT count(*),
       count(*) FILTER (WHERE status IN ('done', 'cancelled')),
       count(*) FILTER (WHERE status IN ('queued', 'processing')),
       pg_total_relation_size('soniq_jobs')
FROM soniq_jobs
"""


@dataclass
class Options:
    database_url: str
    jobs: int
    rate: int
    concurrency: int
    retention: float
    prune_interval: float
    sample_every: float
    contrast: bool
    vacuum_every: float | None  # None: 10 s if the server's autovacuum is off, else never


@dataclass
class Sample:
    t: float  # seconds since the worker started
    enqueued: int
    completed: int  # enqueued minus what is still queued or processing
    rows: int
    finished_rows: int
    size: int  # bytes, table plus indexes and TOAST


@dataclass
class Case:
    label: str
    env: dict[str, str]
    linger: float  # seconds to keep sampling after the last job is done
    samples: list[Sample] = field(default_factory=list)
    drained_at: float | None = None


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        description="Show that soniq_jobs stays bounded while workers prune finished jobs."
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("SONIQ_DATABASE_URL") or DEFAULT_URL,
        help="a server on which the script may create and drop scratch databases "
        "(default: $SONIQ_DATABASE_URL, else %(default)s)",
    )
    parser.add_argument("--jobs", type=positive, default=None, help="jobs per case (200000)")
    parser.add_argument(
        "--rate", type=positive, default=4000, help="jobs enqueued per second (4000)"
    )
    parser.add_argument("--concurrency", type=positive, default=64, help="worker concurrency (64)")
    parser.add_argument(
        "--retention", type=float, default=5.0, help="SONIQ_FINISHED_JOB_RETENTION (5 s)"
    )
    parser.add_argument(
        "--prune-interval", type=float, default=1.0, help="SONIQ_PRUNE_INTERVAL (1 s)"
    )
    parser.add_argument(
        "--sample-every", type=float, default=5.0, help="seconds between samples (5)"
    )
    parser.add_argument("--no-contrast", action="store_true", help="skip the retention-off case")
    parser.add_argument(
        "--vacuum-every",
        type=float,
        default=None,
        metavar="SECONDS",
        help="run VACUUM soniq_jobs this often, standing in for autovacuum (default: 10 "
        "when the server's autovacuum is off, else 0: never)",
    )
    parser.add_argument("--quick", action="store_true", help="20,000 jobs: a smoke run")
    ns = parser.parse_args(argv)
    return Options(
        database_url=ns.database_url,
        jobs=ns.jobs or (20_000 if ns.quick else 200_000),
        rate=ns.rate,
        concurrency=ns.concurrency,
        retention=ns.retention,
        prune_interval=ns.prune_interval,
        sample_every=ns.sample_every,
        contrast=not ns.no_contrast,
        vacuum_every=ns.vacuum_every,
    )


def child_env(workdir: Path, url: str, extra: dict[str, str]) -> dict[str, str]:
    """This environment without SONIQ_* settings, plus the worker's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SONIQ_")}
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = f"{workdir}{os.pathsep}{path}" if path else str(workdir)
    env.update(
        SONIQ_DATABASE_URL=url,
        SONIQ_JOBS_MODULES=JOBS_MODULE,
        SONIQ_RESULT_TTL="0",
        SONIQ_LOG_LEVEL="INFO",
        **extra,
    )
    return env


async def produce(app: Soniq, opts: Options, counter: list[int]) -> None:
    """Enqueue ``opts.jobs`` jobs at ``opts.rate`` per second, a slice every TICK."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while counter[0] < opts.jobs:
        due = min(opts.jobs, int((loop.time() - started) * opts.rate) + 1)
        if due > counter[0]:
            batch = [{"x": i} for i in range(counter[0], due)]
            await app.enqueue_many("bench.noop", batch)
            counter[0] = due
        await asyncio.sleep(TICK)


async def run_case(case: Case, opts: Options, scratch: Scratch, workdir: Path) -> None:
    url = await scratch.create()
    app = Soniq(database_url=url, enqueue_validation="none")
    await app.setup()
    log = workdir / f"worker-{case.label.replace(' ', '-')}.log"
    env = child_env(workdir, url, case.env)
    argv = [sys.executable, "-m", "soniq", "worker", "--concurrency", str(opts.concurrency)]
    print(f"{case.label}: {' '.join(f'{k}={v}' for k, v in case.env.items())}", flush=True)
    counter = [0]
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=workdir, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT
        )
    loop = asyncio.get_running_loop()
    started = loop.time()
    producer = asyncio.create_task(produce(app, opts, counter))
    try:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            end_by: float | None = None
            vacuum_every = opts.vacuum_every or 0.0
            next_vacuum = loop.time() + vacuum_every
            while end_by is None or loop.time() < end_by:
                await asyncio.sleep(opts.sample_every)
                if vacuum_every and loop.time() >= next_vacuum:
                    await conn.execute("VACUUM soniq_jobs")
                    next_vacuum = loop.time() + vacuum_every
                if proc.returncode is not None:
                    raise RuntimeError(f"the worker exited with {proc.returncode}; see {log}")
                cur = await conn.execute(SAMPLE_SQL.encode())
                row = await cur.fetchone()
                assert row is not None
                rows, finished, pending, size = (int(v) for v in row)
                now = loop.time() - started
                sample = Sample(now, counter[0], counter[0] - pending, rows, finished, size)
                case.samples.append(sample)
                print(
                    f"  t={now:6.1f}s enqueued={sample.enqueued:>7} "
                    f"completed={sample.completed:>7} rows={rows:>7} finished={finished:>7} "
                    f"size={size / 2**20:7.1f} MiB",
                    flush=True,
                )
                if end_by is None and producer.done() and pending == 0:
                    case.drained_at = now
                    end_by = loop.time() + case.linger
        await producer  # re-raise a producer error
    finally:
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await producer
        await app.close()
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
            except (TimeoutError, asyncio.TimeoutError):
                proc.kill()
                await proc.wait()
    pruned = [ln for ln in log.read_text(errors="replace").splitlines() if "pruning" in ln]
    for line in pruned[:4]:
        print(f"  worker log: {line}", flush=True)


def report(cases: Sequence[Case], opts: Options) -> None:
    print()
    print(
        f"{opts.jobs:,} jobs at {opts.rate:,}/s into one `soniq worker --concurrency "
        f"{opts.concurrency}`; samples every {opts.sample_every:g} s"
    )
    header = (
        f"{'case':<28} {'drained at':>10} {'max rows':>10} {'max finished':>12} "
        f"{'max size':>10} {'end rows':>9} {'end size':>10}"
    )
    print(header)
    print("-" * len(header))
    for case in cases:
        if not case.samples:
            continue
        top = max(case.samples, key=lambda s: s.rows)
        biggest = max(s.size for s in case.samples)
        last = case.samples[-1]
        drained = f"{case.drained_at:.0f} s" if case.drained_at is not None else "-"
        print(
            f"{case.label:<28} {drained:>10} {top.rows:>10,} "
            f"{max(s.finished_rows for s in case.samples):>12,} "
            f"{biggest / 2**20:>8.1f} MiB {last.rows:>9,} {last.size / 2**20:>6.1f} MiB"
        )
    print(
        "rows/finished: count(*) of soniq_jobs, all and done; size: "
        "pg_total_relation_size (table, indexes, TOAST). A table's files rarely shrink "
        "(VACUUM only gives back empty pages at the end of the heap), but the space of "
        "deleted rows is reused, so a bounded table levels off."
    )


async def main_async(opts: Options) -> int:
    task = asyncio.current_task()
    if task is not None:
        with contextlib.suppress(NotImplementedError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    admin_url = normalise_database_url(opts.database_url)
    scratch = Scratch(admin_url)
    try:
        async with await psycopg.AsyncConnection.connect(admin_url) as conn:
            cur = await conn.execute(
                "SELECT current_setting('server_version'), current_setting('autovacuum')"
            )
            row = await cur.fetchone()
            server: Any = row[0] if row else "?"
            autovacuum: Any = row[1] if row else "?"
    except psycopg.Error as exc:
        print(f"Cannot connect to {admin_url}: {exc}", file=sys.stderr)
        return 2
    if opts.vacuum_every is None:
        opts.vacuum_every = 10.0 if autovacuum == "off" else 0.0
    print(
        f"soniq {soniq.__version__}, Python {platform.python_version()}, PostgreSQL {server}, "
        f"{os.cpu_count()} CPUs, load average {loadavg()}; autovacuum {autovacuum}"
        + (
            f", so the script runs VACUUM soniq_jobs every {opts.vacuum_every:g} s"
            if opts.vacuum_every
            else ""
        ),
        flush=True,
    )
    linger = opts.retention + 2 * opts.prune_interval + 2 * opts.sample_every
    cases = [
        Case(
            f"retention {opts.retention:g} s",
            {
                "SONIQ_FINISHED_JOB_RETENTION": str(opts.retention),
                "SONIQ_PRUNE_INTERVAL": str(opts.prune_interval),
            },
            linger,
        )
    ]
    if opts.contrast:
        cases.append(Case("retention off", {"SONIQ_FINISHED_JOB_RETENTION": "off"}, 0.0))
    with tempfile.TemporaryDirectory(prefix="soniq_bench_") as tmp:
        workdir = Path(tmp)
        (workdir / f"{JOBS_MODULE}.py").write_text(SONIQ_JOBS)
        try:
            for case in cases:
                await run_case(case, opts, scratch, workdir)
            report(cases, opts)
            return 0
        except Exception:
            traceback.print_exc()
            return 1
        finally:
            await scratch.drop_all()


def main(argv: Sequence[str] | None = None) -> int:
    return run_timed(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
