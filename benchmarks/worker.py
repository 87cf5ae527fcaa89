"""Worker throughput and pickup latency: Soniq's worker, and its peers if installed.

Run it against a server on which it may create and drop databases::

    python benchmarks/worker.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
    python benchmarks/worker.py --quick      # smoke run, under 20 seconds

Measurements:

1. **Drain.** ``enqueue_many`` puts N no-op jobs in the queue (not timed), then one worker
   is started and timed until all N are done: ``soniq worker`` as a subprocess (as a
   user runs it), and ``await app.run_worker(run_once=True)`` in this process.
2. **Pickup latency.** An idle ``soniq worker`` gets one job at a time; the latency is
   the handler's ``time.time()`` at start minus the producer's just before ``enqueue``.
3. **Peers.** The drain of measurement 1 with PgQueuer and Procrastinate, when they
   are importable, each in a scratch database of its own.

Each measurement uses scratch databases ``soniq_bench_<random>`` that are dropped at
the end, also after an error, Ctrl-C or SIGTERM. Drain figures are the median of
``--rounds`` rounds. The script only prints figures; it never fails on a slow result.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import conninfo, sql
from support import Scratch, loadavg, positive, run_timed

import soniq
from soniq import Soniq
from soniq.storage.urls import normalise_database_url

DEFAULT_URL: Final = "postgresql://postgres@127.0.0.1:5432/postgres"
JOBS_MODULE: Final = "soniq_bench_jobs"
PGQ_MODULE: Final = "soniq_bench_pgqueuer"
PROCRASTINATE_MODULE: Final = "soniq_bench_procrastinate"
DONE_CHANNEL: Final = "soniq_bench_done"
STOP_TIMEOUT: Final = 30.0  # seconds a worker gets to exit after SIGTERM
MAX_POLL: Final = 0.5  # seconds between counts of finished jobs, far from the end
# The application_name of every worker's connections, so that the statements of a
# worker stopped after a timed-out round can be ended before the next round.
WORKER_APP: Final = "soniq_bench_worker"
IN_PROCESS_APP: Final = "soniq_bench_app"  # the app in this process (enqueues, row 1b)
LATENCY_WARMUP: Final = 20  # untimed jobs before the latency measurement
# `soniq worker` with this interpreter (the console script runs the same code).
SONIQ_CLI: Final = [sys.executable, "-m", "soniq", "worker"]

# The jobs module `soniq worker` imports (SONIQ_JOBS_MODULES), and this process too
# for enqueueing and for the in-process worker. "Every feature on": a JobContext
# parameter, a before_job and an after_job hook, and the default job timeout.
SONIQ_JOBS: Final = '''\
"""Jobs for benchmarks/worker.py (written to a temporary directory)."""

import time

from soniq import JobContext, Soniq

app = Soniq()


@app.job(name="bench.noop")
async def noop(ctx: JobContext, x: int) -> None:
    return None


@app.job(name="bench.stamp")
async def stamp(ctx: JobContext) -> float:
    return time.time()


@app.before_job
def before_job(job_name: str, job_id: str, attempt: int) -> None:
    return None


@app.after_job
def after_job(job_name: str, job_id: str, duration_ms: float) -> None:
    return None
'''

# PgQueuer: a factory as `pgq run module:factory` expects it, over one asyncpg
# connection (the driver of PgQueuer's own examples), and a __main__ that starts it with
# pgqueuer.run() as `pgq run` would: its CLI fails to start under newer typer
# releases (`'str' object has no attribute 'name'` in setup_fancy_logger).
PGQ_JOBS: Final = '''\
"""PgQueuer jobs for benchmarks/worker.py (written to a temporary directory)."""

import asyncio
import os
import sys
from contextlib import asynccontextmanager
from datetime import timedelta

import asyncpg
import pgqueuer
from pgqueuer import PgQueuer
from pgqueuer.models import Job


@asynccontextmanager
async def create():
    conn = await asyncpg.connect(os.environ["PGDSN"])
    pgq = PgQueuer.from_asyncpg_connection(conn)

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        return None

    try:
        yield pgq
    finally:
        await conn.close()


if __name__ == "__main__":
    concurrency, batch_size = int(sys.argv[1]), int(sys.argv[2])
    asyncio.run(
        pgqueuer.run(
            create,
            max_concurrent_tasks=concurrency,
            batch_size=batch_size,
            dequeue_timeout=timedelta(seconds=5),
        )
    )
'''

PROCRASTINATE_JOBS: Final = '''\
"""Procrastinate jobs for benchmarks/worker.py (written to a temporary directory)."""

import os

import procrastinate

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=os.environ["SONIQ_BENCH_PEER_URL"])
)


@app.task(name="noop")
async def noop() -> None:
    return None
'''


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Options:
    database_url: str
    jobs: int
    rounds: int
    concurrency: int
    latency_jobs: int
    procrastinate_jobs: int
    round_timeout: float | None
    poll_interval: float
    full: bool
    peers: bool
    analyze: bool
    quick: bool
    json_path: str | None


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        description="Measure Soniq's worker: drain throughput, pickup latency, peers.",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("SONIQ_DATABASE_URL") or DEFAULT_URL,
        help="a server on which the script may create and drop scratch databases "
        "(default: $SONIQ_DATABASE_URL, else %(default)s)",
    )
    parser.add_argument(
        "--jobs", type=positive, default=None, help="jobs per drain round (default 50000)"
    )
    parser.add_argument(
        "--rounds",
        type=positive,
        default=None,
        help="drain rounds per case; the median is reported (default 3, 1 with --quick)",
    )
    parser.add_argument(
        "--concurrency", type=positive, default=64, help="worker concurrency (default 64)"
    )
    parser.add_argument(
        "--latency-jobs",
        type=positive,
        default=None,
        help="jobs in the pickup-latency measurement, one at a time (default 300)",
    )
    parser.add_argument(
        "--procrastinate-jobs",
        type=positive,
        default=None,
        help="jobs per Procrastinate drain round (default 5000: it runs ~150 jobs/s here)",
    )
    parser.add_argument(
        "--round-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="give up on a drain round after this long (default: jobs/400, at least 60)",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=0.05,
        metavar="SECONDS",
        help="how often a drain round counts the finished jobs near its end (default "
        "%(default)s; sparser before): each count scans the queue table, on the same CPUs as "
        "the worker",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="add rows for concurrency 1 and 8, and PgQueuer with its largest batch",
    )
    parser.add_argument("--no-peers", action="store_true", help="skip PgQueuer and Procrastinate")
    parser.add_argument(
        "--no-analyze",
        action="store_true",
        help="do not ANALYZE the queue table after enqueueing (planner left on stale stats)",
    )
    parser.add_argument(
        "--json",
        dest="json_path",
        metavar="PATH",
        help="also write the figures as JSON to PATH ('-' for stdout)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes and one round: a smoke run"
    )
    ns = parser.parse_args(argv)
    quick: bool = ns.quick
    jobs: int = ns.jobs or (2_000 if quick else 50_000)
    return Options(
        database_url=ns.database_url,
        jobs=jobs,
        rounds=ns.rounds or (1 if quick else 3),
        concurrency=ns.concurrency,
        latency_jobs=ns.latency_jobs or (30 if quick else 300),
        procrastinate_jobs=min(jobs, ns.procrastinate_jobs or (300 if quick else 5_000)),
        round_timeout=ns.round_timeout,
        poll_interval=ns.poll_interval,
        full=ns.full,
        peers=not ns.no_peers,
        analyze=not ns.no_analyze,
        quick=quick,
        json_path=ns.json_path,
    )


# --------------------------------------------------------------------------- results


@dataclass
class DrainRound:
    seconds: float  # worker start until all jobs were seen done (or the round timed out)
    steady: float | None  # jobs/s between 10% and 90% done
    first_done: float | None  # seconds from worker start until the first job was done
    done: int  # jobs done at the end of the round
    timed_out: bool = False

    @property
    def ranked(self) -> float:
        """Seconds for the median: a round that timed out ranks as the slowest."""
        return math.inf if self.timed_out else self.seconds


@dataclass
class DrainResult:
    key: str
    label: str
    jobs: int
    command: str
    rounds: list[DrainRound] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(r.ranked for r in self.rounds)

    @property
    def rate(self) -> float:
        return self.jobs / self.median

    @property
    def timeouts(self) -> int:
        return sum(r.timed_out for r in self.rounds)

    @property
    def steady(self) -> float | None:
        rates = [r.steady for r in self.rounds if r.steady is not None]
        return statistics.median(rates) if rates else None


@dataclass
class LatencyResult:
    key: str
    label: str
    millis: list[float]

    def stats(self) -> dict[str, float]:
        ms = sorted(self.millis)
        cuts = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else ms * 99
        return {
            "median": statistics.median(ms),
            "p90": cuts[89],
            "p99": cuts[98],
            "max": ms[-1],
        }


@dataclass
class Skipped:
    key: str
    label: str
    reason: str


# --------------------------------------------------------------------------- databases


async def execute(url: str, *statements: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for statement in statements:
            await conn.execute(statement.encode())


async def settle(url: str, table: str, analyze: bool) -> None:
    """After enqueueing, before the timer: fresh planner stats and a clean checkpoint."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        if analyze:
            await conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            await conn.execute("CHECKPOINT")  # so no checkpoint is due mid-round


# --------------------------------------------------------------------------- workers


def child_env(workdir: Path, **extra: str) -> dict[str, str]:
    """This environment without SONIQ_* settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SONIQ_")}
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = f"{workdir}{os.pathsep}{path}" if path else str(workdir)
    env.update(extra)
    return env


@contextlib.asynccontextmanager
async def subprocess_worker(
    argv: Sequence[str], env: dict[str, str], workdir: Path, log: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Start a worker process; on exit stop it with SIGTERM (SIGKILL after a timeout)."""
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=workdir, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT
        )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
            except (TimeoutError, asyncio.TimeoutError):
                proc.kill()
                await proc.wait()
                print(f"  (worker ignored SIGTERM for {STOP_TIMEOUT:g}s; killed)", flush=True)


def log_tail(log: Path, lines: int = 15) -> str:
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


@dataclass
class DrainCase:
    """One row of the drain table: how to fill the queue, start a worker, count done."""

    result: DrainResult
    url: str  # the database the case runs in
    table: str  # its queue table, for ANALYZE
    done_sql: str  # one row, one column: how many of the round's jobs are finished
    fill: Callable[[int], Awaitable[None]]  # empty the queue, then enqueue n jobs
    argv: list[str] | None = None  # a worker subprocess ...
    env: dict[str, str] | None = None
    in_process: Callable[[], Awaitable[Any]] | None = None  # ... or a coroutine here


class Bench:
    def __init__(self, opts: Options, scratch: Scratch, workdir: Path) -> None:
        self.opts = opts
        self.scratch = scratch
        self.workdir = workdir
        self.drains: list[DrainResult] = []
        self.latency: list[LatencyResult] = []
        self.skipped: list[Skipped] = []
        self.footnotes: list[str] = []
        self.app: Soniq | None = None
        self.peer_closers: list[Callable[[], Awaitable[Any]]] = []
        self.log_count = 0

    def new_log(self, key: str) -> Path:
        self.log_count += 1
        return self.workdir / f"worker-{self.log_count:03d}-{key}.log"

    async def close(self) -> None:
        for closer in reversed(self.peer_closers):
            with contextlib.suppress(Exception):
                await closer()
        if self.app is not None:
            await self.app.close()

    # -- timing one drain round ----------------------------------------------------

    async def drain_round(self, case: DrainCase) -> DrainRound:
        n = case.result.jobs
        await case.fill(n)
        await settle(case.url, case.table, self.opts.analyze)
        gc.collect()
        samples: list[tuple[float, int]] = []
        timeout = self.opts.round_timeout or max(60.0, n / 400)
        every = self.opts.poll_interval
        async with await psycopg.AsyncConnection.connect(case.url, autocommit=True) as poll:
            start = time.perf_counter()
            try:
                if case.argv is not None:
                    assert case.env is not None
                    log = self.new_log(case.result.key)
                    async with subprocess_worker(case.argv, case.env, self.workdir, log) as proc:
                        try:
                            seconds = await watch(
                                poll, case.done_sql, n, start, samples, proc, timeout, every
                            )
                        except WorkerExited as exc:
                            raise RuntimeError(f"{exc}; worker log:\n{log_tail(log)}") from None
                        except TimedOut:
                            # Stuck statements hold row locks and CPU: end them first.
                            await end_worker_statements(case.url)
                            raise
                else:
                    assert case.in_process is not None
                    seconds = await self.in_process_round(case, poll, n, start, samples, timeout)
                return DrainRound(seconds, steady_rate(samples, n), first_done(samples), n)
            except TimedOut:
                elapsed = time.perf_counter() - start
                done = samples[-1][1] if samples else 0
                key = case.result.key
                print(f"  {key:<3} timed out after {elapsed:.0f} s, {done:,} of {n:,} done")
                return DrainRound(
                    elapsed, steady_rate(samples, n), first_done(samples), done, timed_out=True
                )
            finally:
                await end_worker_statements(case.url)

    async def in_process_round(
        self,
        case: DrainCase,
        poll: psycopg.AsyncConnection[Any],
        n: int,
        start: float,
        samples: list[tuple[float, int]],
        timeout: float,
    ) -> float:
        assert case.in_process is not None
        every = self.opts.poll_interval
        watcher = asyncio.create_task(
            watch(poll, case.done_sql, n, start, samples, None, timeout, every)
        )
        worker = asyncio.ensure_future(case.in_process())
        try:
            await asyncio.wait([worker, watcher], return_when=asyncio.FIRST_COMPLETED)
            if worker.done():
                worker.result()  # raises what the worker raised
                seconds = time.perf_counter() - start
                await asyncio.wait_for(watcher, 10)  # confirms that every job is done
                return seconds
            watcher.result()  # the jobs were all done before run_worker returned
            await asyncio.wait_for(worker, STOP_TIMEOUT)
            return time.perf_counter() - start
        except TimedOut:
            # Cancel the worker; its shutdown waits on its statements, so end those.
            worker.cancel()
            await end_worker_statements(case.url, WORKER_APP, IN_PROCESS_APP)
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(worker, STOP_TIMEOUT)
            if self.app is not None:
                await self.app.close()  # its pool lost connections; it reopens on use
            raise
        finally:
            watcher.cancel()
            worker.cancel()

    async def run_drains(self, cases: Sequence[DrainCase]) -> None:
        """Interleave the rounds of ``cases`` (a, b, a, b, ...); print each as it ends."""
        for case in cases:
            self.drains.append(case.result)
        for i in range(self.opts.rounds):
            for case in cases:
                r = await self.drain_round(case)
                case.result.rounds.append(r)
                if r.timed_out:
                    continue
                steady = f"{r.steady:,.0f}" if r.steady else "-"
                print(
                    f"  {case.result.key:<3} round {i + 1}: {case.result.jobs / r.seconds:>9,.0f} "
                    f"jobs/s ({r.seconds:.2f} s; steady {steady} jobs/s)",
                    flush=True,
                )

    # -- Soniq -----------------------------------------------------------------------

    async def soniq(self) -> None:
        opts = self.opts
        url = await self.scratch.create()
        # The jobs module builds `app = Soniq()` from the environment, as a user's does.
        for key in [k for k in os.environ if k.startswith("SONIQ_")]:
            del os.environ[key]
        os.environ["SONIQ_DATABASE_URL"] = named_url(url, IN_PROCESS_APP)
        (self.workdir / f"{JOBS_MODULE}.py").write_text(SONIQ_JOBS)
        sys.path.insert(0, str(self.workdir))
        jobs = importlib.import_module(JOBS_MODULE)
        app: Soniq = jobs.app
        self.app = app
        await app.setup()
        await app.ensure_initialized()
        # Autovacuum stays as migration 0001 sets it up for a queue table: a worker
        # in production runs with it, and without it dead index entries left by claimed
        # rows pile up in front of the claim query (see benchmarks/README.md).
        noop = jobs.noop

        async def fill(n: int) -> None:
            await execute(url, "TRUNCATE soniq_jobs", "TRUNCATE soniq_workers")
            await app.enqueue_many(noop, [{"x": i} for i in range(n)])

        done_sql = "SELECT count(*) FROM soniq_jobs WHERE status = 'done'"
        env = child_env(
            self.workdir,
            SONIQ_DATABASE_URL=named_url(url, WORKER_APP),
            SONIQ_JOBS_MODULES=JOBS_MODULE,
        )

        def cli_case(key: str, concurrency: int, n: int) -> DrainCase:
            return DrainCase(
                DrainResult(
                    key,
                    f"soniq worker --concurrency {concurrency} (subprocess)",
                    n,
                    f"soniq worker --concurrency {concurrency}",
                ),
                url,
                "soniq_jobs",
                done_sql,
                fill,
                argv=[*SONIQ_CLI, "--concurrency", str(concurrency)],
                env=env,
            )

        c = opts.concurrency
        cases = [
            cli_case("1a", c, opts.jobs),
            DrainCase(
                DrainResult(
                    "1b",
                    f"app.run_worker(concurrency={c}, run_once=True) in-process",
                    opts.jobs,
                    f"await app.run_worker(concurrency={c}, run_once=True)",
                ),
                url,
                "soniq_jobs",
                done_sql,
                fill,
                in_process=lambda: app.run_worker(concurrency=c, run_once=True),
            ),
        ]
        if opts.full:
            cases.append(cli_case("1c", 1, min(opts.jobs, 300 if opts.quick else 5_000)))
            cases.append(cli_case("1d", 8, min(opts.jobs, 20_000)))
        print(f"1. drain {opts.jobs:,} no-op jobs (median of {opts.rounds})", flush=True)
        await self.run_drains(cases)

        print(f"2. pickup latency, {opts.latency_jobs} jobs one at a time", flush=True)
        await execute(url, "TRUNCATE soniq_jobs", "TRUNCATE soniq_workers")
        await self.pickup_latency(app, jobs.stamp, url, env)

    async def pickup_latency(
        self, app: Soniq, stamp: Callable[..., Any], url: str, env: dict[str, str]
    ) -> None:
        # The producer learns that a job is done from a NOTIFY sent when the worker's
        # acknowledgement commits: no polling load while a pickup is being timed.
        await execute(
            url,
            "CREATE FUNCTION soniq_bench_notify_done() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$BEGIN PERFORM pg_notify('{DONE_CHANNEL}', NEW.id::text); RETURN NULL; END$$",
            "CREATE TRIGGER soniq_bench_done AFTER UPDATE OF status ON soniq_jobs FOR EACH ROW "
            "WHEN (NEW.status = 'done') EXECUTE FUNCTION soniq_bench_notify_done()",
        )
        pickup: list[float] = []
        to_done: list[float] = []
        log = self.new_log("latency")
        argv = [*SONIQ_CLI, "--concurrency", str(self.opts.concurrency)]
        env = {**env, "SONIQ_POLL_INTERVAL": "5"}
        try:
            async with (
                await psycopg.AsyncConnection.connect(url, autocommit=True) as listen,
                subprocess_worker(argv, env, self.workdir, log) as proc,
            ):
                await listen.execute(f"LISTEN {DONE_CHANNEL}".encode())
                await wait_for_listener(listen, proc, log)
                for i in range(LATENCY_WARMUP + self.opts.latency_jobs):
                    t0 = time.time()
                    job_id = await app.enqueue(stamp)
                    async for note in listen.notifies(timeout=30):
                        if note.payload == job_id:
                            break
                    else:
                        raise RuntimeError(
                            f"job {job_id} not done after 30 s; worker log:\n{log_tail(log)}"
                        )
                    done = time.time()
                    started = await app.get_result(job_id)
                    if i >= LATENCY_WARMUP:
                        pickup.append((float(started) - t0) * 1000)
                        to_done.append((done - t0) * 1000)
        finally:
            await execute(
                url,
                "DROP TRIGGER IF EXISTS soniq_bench_done ON soniq_jobs",
                "DROP FUNCTION IF EXISTS soniq_bench_notify_done()",
            )
        self.latency = [
            LatencyResult("2a", "pickup: enqueue() called -> handler started", pickup),
            LatencyResult("2b", "enqueue() called -> done committed (seen via LISTEN)", to_done),
        ]
        for r in self.latency:
            s = r.stats()
            print(
                f"  {r.key:<3} median {s['median']:.2f} ms, p90 {s['p90']:.2f}, "
                f"p99 {s['p99']:.2f}, max {s['max']:.2f}",
                flush=True,
            )

    # -- peers ---------------------------------------------------------------------

    async def peers(self) -> None:
        print("3. peers: the same drain", flush=True)
        c = self.opts.concurrency
        for key, name, run in (
            ("3a", "pgqueuer", self.pgqueuer),
            ("3b", "procrastinate", self.procrastinate),
        ):
            if not self.opts.peers:
                self.skipped.append(Skipped(key, name, "--no-peers"))
                continue
            try:
                module = importlib.import_module(name)
            except ImportError:
                self.skipped.append(Skipped(key, name, "not installed"))
                print(f"  {key}  {name}: not installed", flush=True)
                continue
            try:
                await run(key, module, c)
            except Exception as exc:
                detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                self.skipped.append(Skipped(key, name, f"failed: {detail}"))
                print(f"  {key}  {name} failed:", flush=True)
                traceback.print_exc()

    async def pgqueuer(self, key: str, pgq: Any, concurrency: int) -> None:
        try:
            importlib.import_module("asyncpg")
        except ImportError:
            self.skipped.append(Skipped(key, "pgqueuer", "asyncpg (its worker driver) missing"))
            return
        if "://" not in self.scratch.admin_url:
            self.skipped.append(Skipped(key, "pgqueuer", "asyncpg needs a postgresql:// URL"))
            return
        url = await self.scratch.create()
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
        self.peer_closers.append(conn.close)
        queries = pgq.Queries(pgq.PsycopgDriver(conn))
        await queries.install()
        (self.workdir / f"{PGQ_MODULE}.py").write_text(PGQ_JOBS)

        async def fill(n: int) -> None:
            await execute(url, "TRUNCATE pgqueuer, pgqueuer_log")
            for start in range(0, n, 10_000):
                size = min(10_000, n - start)
                await queries.enqueue(["noop"] * size, [None] * size, [0] * size)

        env = child_env(self.workdir, PGDSN=named_url(url, WORKER_APP))
        batches = [10]  # PgQueuer's default batch_size
        if self.opts.full:
            batches.append(max(1, concurrency // 2))  # the largest it accepts
        cases = []
        for i, batch in enumerate(batches):
            n = self.opts.jobs
            cases.append(
                DrainCase(
                    DrainResult(
                        key if i == 0 else f"{key}'",
                        f"pgqueuer {pgq.__version__}, max_concurrent_tasks={concurrency}, "
                        f"batch_size={batch}",
                        n,
                        f"pgqueuer.run(factory, max_concurrent_tasks={concurrency}, "
                        f"batch_size={batch})",
                    ),
                    url,
                    "pgqueuer",
                    # Finished jobs leave the table (for pgqueuer_log).
                    f"SELECT {n} - count(*) FROM pgqueuer",
                    fill,
                    argv=[sys.executable, "-m", PGQ_MODULE, str(concurrency), str(batch)],
                    env=env,
                )
            )
        await self.run_drains(cases)

    async def procrastinate(self, key: str, procrastinate: Any, concurrency: int) -> None:
        url = await self.scratch.create()
        os.environ["SONIQ_BENCH_PEER_URL"] = url
        (self.workdir / f"{PROCRASTINATE_MODULE}.py").write_text(PROCRASTINATE_JOBS)
        module = importlib.import_module(PROCRASTINATE_MODULE)
        app = module.app
        await app.open_async()
        self.peer_closers.append(app.close_async)
        await app.schema_manager.apply_schema_async()

        async def fill(n: int) -> None:
            await execute(url, "TRUNCATE procrastinate_jobs CASCADE")
            for start in range(0, n, 10_000):
                size = min(10_000, n - start)
                await module.noop.batch_defer_async(*({} for _ in range(size)))

        n = self.opts.procrastinate_jobs
        exe = shutil.which("procrastinate")
        cli = [exe] if exe else [sys.executable, "-m", "procrastinate"]
        args = [f"--app={PROCRASTINATE_MODULE}.app", "worker", f"--concurrency={concurrency}"]
        case = DrainCase(
            DrainResult(
                key,
                f"procrastinate {procrastinate.__version__}, worker --concurrency {concurrency}",
                n,
                f"procrastinate {' '.join(args)}",
            ),
            url,
            "procrastinate_jobs",
            "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'",
            fill,
            argv=[*cli, *args],
            env=child_env(self.workdir, SONIQ_BENCH_PEER_URL=named_url(url, WORKER_APP)),
        )
        await self.run_drains([case])


class TimedOut(Exception):
    """A drain round ran past its time limit."""


class WorkerExited(Exception):
    """A worker process ended before its jobs were done."""


async def watch(
    conn: psycopg.AsyncConnection[Any],
    done_sql: str,
    n: int,
    start: float,
    samples: list[tuple[float, int]],
    proc: asyncio.subprocess.Process | None,
    timeout: float,
    every: float,
) -> float:
    """Count finished jobs until all ``n`` are; return the seconds.

    Each count scans the queue table on the CPUs the worker runs on, so polls are
    sparse while the end is far off (up to ``MAX_POLL`` s apart, about an eighth of
    the expected remaining time) and ``every`` s apart near it: the end time keeps the
    resolution of ``every`` without a scan every 50 ms for the whole round.
    """
    query = done_sql.encode()
    while True:
        cur = await conn.execute(query)
        row = await cur.fetchone()
        now = time.perf_counter() - start
        done = int(row[0]) if row else 0
        samples.append((now, done))
        if done >= n:
            return now
        if proc is not None and proc.returncode is not None:
            raise WorkerExited(f"the worker exited with status {proc.returncode}, {done}/{n} done")
        if now > timeout:
            raise TimedOut
        wait = every
        if len(samples) >= 2:
            (t0, d0), (t1, d1) = samples[-2], samples[-1]
            if d1 > d0 and t1 > t0:
                wait = min(MAX_POLL, max(every, (n - done) / ((d1 - d0) / (t1 - t0)) / 8))
        await asyncio.sleep(wait)


async def end_worker_statements(url: str, *names: str) -> None:
    """Terminate the backends named ``names`` (default: worker processes').

    None are left after a clean stop; after a timed-out round, a stuck statement would
    otherwise go on holding row locks and a CPU.
    """
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = ANY(%s)",
            (list(names or (WORKER_APP,)),),
        )


def named_url(url: str, application_name: str) -> str:
    """``url`` with an application_name (still a URL if it was one, for asyncpg)."""
    if "://" not in url:
        return conninfo.make_conninfo(url, application_name=application_name)
    parts = urlsplit(url)
    query = f"{parts.query}&" if parts.query else ""
    return urlunsplit(parts._replace(query=f"{query}application_name={application_name}"))


async def wait_for_listener(
    conn: psycopg.AsyncConnection[Any], proc: asyncio.subprocess.Process, log: Path
) -> None:
    """Until the worker's LISTEN connection is up (it then finds work on NOTIFY)."""
    deadline = time.perf_counter() + 60
    while time.perf_counter() < deadline:
        cur = await conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() "
            # The worker listens for cancel requests and delayed jobs right after new jobs.
            # (The channel may be quoted: the worker sends it as an identifier.)
            """AND query ~ '^LISTEN "?soniq_(new_job|cancel|delayed)"?$'"""
        )
        row = await cur.fetchone()
        if row and row[0]:
            return
        if proc.returncode is not None:
            break
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the worker did not start listening; worker log:\n{log_tail(log)}")


def steady_rate(samples: Sequence[tuple[float, int]], n: int) -> float | None:
    """Jobs per second between the samples where 10% and 90% of ``n`` were done."""
    lo = next((s for s in samples if s[1] >= 0.1 * n), None)
    hi = next((s for s in samples if s[1] >= 0.9 * n), None)
    if lo is None or hi is None or hi[0] <= lo[0]:
        return None
    return (hi[1] - lo[1]) / (hi[0] - lo[0])


def first_done(samples: Sequence[tuple[float, int]]) -> float | None:
    return next((t for t, done in samples if done > 0), None)


# --------------------------------------------------------------------------- report

DRAIN_TARGET: Final = 20_000.0
LATENCY_TARGETS: Final = {"median": 3.0, "p99": 15.0}


def print_report(bench: Bench, header: list[str]) -> None:
    width = 62
    print()
    for line in header:
        print(line)
    print()
    print(
        f"{'#':<4} {'drain case':<{width}} {'jobs':>7} {'median s':>8} {'jobs/s':>8} "
        f"{'steady/s':>9} {'1st done':>8} {'rounds: min..max jobs/s':>24}"
    )
    print("-" * (width + 76))
    for r in bench.drains:
        finished = [x.seconds for x in r.rounds if not x.timed_out]
        spread = f"{r.jobs / max(finished):,.0f}..{r.jobs / min(finished):,.0f}" if finished else ""
        if r.timeouts:
            spread = f"{r.timeouts} timed out, {spread}".rstrip(", ")
        steady = f"{r.steady:,.0f}" if r.steady else "-"
        firsts = [x.first_done for x in r.rounds if x.first_done is not None]
        first = f"{statistics.median(firsts):.2f} s" if firsts else "-"
        print(
            f"{r.key:<4} {r.label:<{width}} {r.jobs:>7,} {r.median:>8.2f} {r.rate:>8,.0f} "
            f"{steady:>9} {first:>8} {spread:>24}"
        )
    for skip in bench.skipped:
        print(f"{skip.key:<4} {skip.label:<{width}} {skip.reason}")
    if bench.latency:
        print()
        n = len(bench.latency[0].millis)
        print(
            f"{'#':<4} {'latency, ' + str(n) + ' jobs one at a time, ms':<{width}} "
            f"{'median':>7} {'p90':>7} {'p99':>7} {'max':>7}"
        )
        print("-" * (width + 34))
        for lr in bench.latency:
            s = lr.stats()
            print(
                f"{lr.key:<4} {lr.label:<{width}} {s['median']:>7.2f} {s['p90']:>7.2f} "
                f"{s['p99']:>7.2f} {s['max']:>7.2f}"
            )
    print()
    print("Against the targets (informational only; nothing here fails the run):")
    for r in bench.drains:
        if r.key == "1a":
            text = f"drain, {r.command}: {r.rate:,.0f} jobs/s (steady {r.steady or 0:,.0f})"
            verdict = "met" if r.rate >= DRAIN_TARGET else "MISSED"
            print(f"  {text:<82} target >= {DRAIN_TARGET:,.0f}/s  {verdict}")
    if bench.latency:
        s = bench.latency[0].stats()
        for stat, target in LATENCY_TARGETS.items():
            text = f"pickup latency {stat}: {s[stat]:.2f} ms"
            verdict = "met" if s[stat] <= target else "MISSED"
            print(f"  {text:<82} target <= {target:g} ms{' ' * 5}{verdict}")
    if bench.footnotes:
        print()
        for note in bench.footnotes:
            print(textwrap.fill(note, 100, subsequent_indent="   "))


FOOTNOTES: Final = [
    "*  Rows 1a, 1c, 1d, 3a and 3b start a worker process: their time runs from the spawn "
    "until a poll (every 50 ms near the end, sparser before) sees every job done, so it "
    "includes interpreter start-up (see the "
    "'1st done' column). 'steady/s' leaves start-up out: jobs done between 10% and 90% "
    "of the round, divided by the time between.",
    "*  Row 1b times app.run_worker(run_once=True) in this process, on an open pool, until "
    "it returns. run_once claims a batch, waits for all of it, then claims the next.",
    "*  Soniq's handler takes a JobContext and two no-op sync hooks run per job, with the "
    "default 300 s timeout; the peers' handlers are plain no-op coroutines.",
    "*  PgQueuer runs over one asyncpg connection, started with pgqueuer.run() (what its "
    "CLI `pgq run` calls) because the CLI fails to start under current typer; it claims "
    "batch_size jobs per query (default 10; at most concurrency/2). Finished PgQueuer jobs "
    "are deleted into pgqueuer_log, Soniq's and Procrastinate's are updated in place.",
    "*  Procrastinate fetches one job per query and logs two INFO lines per job (its "
    "defaults); it drains fewer jobs per round because it is ~30x slower.",
]


async def describe(url: str, opts: Options) -> list[str]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute("SHOW server_version")
        row = await cur.fetchone()
    server = row[0] if row else "?"
    return [
        f"soniq {soniq.__version__} ({_source_commit()}); "
        f"Python {platform.python_version()}; psycopg "
        f"{psycopg.__version__} ({psycopg.pq.__impl__}); PostgreSQL {server}; "
        f"{os.cpu_count()} CPUs",
        f"drain: median of {opts.rounds} round(s); queue table "
        f"{'ANALYZEd' if opts.analyze else 'not analyzed'} and CHECKPOINT after enqueueing, "
        f"autovacuum as each project configures it{'; --quick' if opts.quick else ''}",
        f"load average at start {loadavg()} (other work on the box skews the figures)",
    ]


def _source_commit() -> str:
    """The git commit soniq was imported from, if it is a checkout; '+' if modified."""
    src = Path(soniq.__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(src), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    return f"commit {head}{'+' if dirty else ''}"


def dump_json(bench: Bench, header: list[str], path: str) -> None:
    data = {
        "header": header,
        "load_average_end": loadavg(),
        "drain": [
            {
                "key": r.key,
                "label": r.label,
                "command": r.command,
                "jobs": r.jobs,
                "median_seconds": r.median,
                "jobs_per_second": r.rate,
                "steady_jobs_per_second": r.steady,
                "rounds": [asdict(x) for x in r.rounds],
            }
            for r in bench.drains
        ],
        "latency_ms": [
            {"key": lr.key, "label": lr.label, **lr.stats(), "samples": lr.millis}
            for lr in bench.latency
        ],
        "skipped": [asdict(s) for s in bench.skipped],
    }
    text = json.dumps(data, indent=2)
    if path == "-":
        print(text)
    else:
        Path(path).write_text(text + "\n")
        print(f"figures written to {path}")


# --------------------------------------------------------------------------- main


async def main_async(opts: Options) -> int:
    # SIGTERM cancels the run like Ctrl-C does, so the scratch databases are dropped.
    task = asyncio.current_task()
    if task is not None:
        with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    admin_url = normalise_database_url(opts.database_url)
    scratch = Scratch(admin_url)
    try:
        header = await describe(admin_url, opts)
    except psycopg.Error as exc:
        print(f"Cannot connect to {admin_url}: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="soniq_bench_") as tmp:
        bench = Bench(opts, scratch, Path(tmp))
        bench.footnotes = list(FOOTNOTES)
        try:
            await bench.soniq()
            await bench.peers()
            print_report(bench, header)
            if opts.json_path:
                dump_json(bench, header, opts.json_path)
            return 0
        except Exception:
            traceback.print_exc()
            return 1
        finally:
            try:
                await bench.close()
            finally:
                await scratch.drop_all()


def main(argv: Sequence[str] | None = None) -> int:
    return run_timed(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
