"""Enqueue throughput: Soniq against bare driver calls on the same PostgreSQL.

Run it against a server on which it may create and drop a database::

    python benchmarks/enqueue.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
    python benchmarks/enqueue.py --quick      # smoke run, a few seconds

The script creates a scratch database ``soniq_bench_<random>``, runs
``await Soniq(database_url=...).setup()`` on it, measures, prints a table and drops
the database again, also when a measurement fails or the run is interrupted.

Every figure is the median of ``--rounds`` timed rounds, after one shorter untimed
warm-up round. ``soniq_jobs`` is truncated before every round (outside the timed part), so a
growing table does not skew later rounds. The script only prints figures; it never
fails on a slow result.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import gc
import json
import os
import platform
import signal
import statistics
import sys
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg
from psycopg import conninfo
from support import Scratch, loadavg, positive, run_timed

import soniq
import soniq_sync
from soniq import Soniq
from soniq.storage.queries import QUERIES
from soniq.storage.urls import normalise_database_url

DEFAULT_URL: Final = "postgresql://postgres@127.0.0.1:5432/postgres"
JOB_NAME: Final = "bench.noop"
# Enqueued by name by a producer with no handler for it (row 2d).
REMOTE_NAME: Final = "bench.remote.noop"

# The bare baselines write the same six columns Soniq writes for a plain job.
BARE_INSERT: Final = (
    "INSERT INTO soniq_jobs (id, job_name, args, queue, priority, max_attempts) "
    "VALUES (%s::uuid, %s, %s::jsonb, %s, %s, %s)"
)
BARE_COPY: Final = "COPY soniq_jobs (id, job_name, args, queue, priority, max_attempts) FROM STDIN"
# Soniq's own single-row statement (CTE, ON CONFLICT, pg_notify), for the ref rows.
INSERT_JOB: Final = QUERIES["insert_job"].psycopg
COPY_COLUMNS: Final = ["id", "job_name", "args", "queue", "priority", "max_attempts"]

# Jobs in the untimed warm-up round: enough to open the pool, get statements prepared
# (psycopg prepares a statement on its 5th run) and warm the caches.
WARMUP_SINGLE: Final = 500
WARMUP_BULK: Final = 10_000

#: A timed round: writes the given number of jobs.
Round = Callable[[int], Awaitable[None]]
Noop = Callable[..., Awaitable[None]]


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Options:
    database_url: str
    rounds: int
    single: int
    bulk: tuple[int, ...]
    asyncpg: bool
    reference: bool
    quick: bool
    django: bool = False


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        description="Measure Soniq's enqueue paths against bare psycopg/asyncpg.",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("SONIQ_DATABASE_URL") or DEFAULT_URL,
        help="a server on which the script may create and drop a scratch database "
        "(default: $SONIQ_DATABASE_URL, else %(default)s)",
    )
    parser.add_argument(
        "--rounds",
        type=positive,
        default=None,
        help="timed rounds per measurement; the median is reported (default 3, 1 with --quick)",
    )
    parser.add_argument(
        "--single",
        type=positive,
        default=None,
        help="jobs per round for the one-at-a-time measurements (default 5000)",
    )
    parser.add_argument(
        "--bulk",
        type=_sizes,
        default=None,
        help="comma-separated enqueue_many batch sizes (default 10000,100000)",
    )
    parser.add_argument("--no-asyncpg", action="store_true", help="skip the asyncpg measurements")
    parser.add_argument(
        "--reference",
        action="store_true",
        help="also time Soniq's own insert_job SQL on a bare connection (rows 1c and 2c), "
        "which splits the single-enqueue gap into SQL cost and Python cost",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes and one round: a smoke run"
    )
    parser.add_argument(
        "--django",
        action="store_true",
        help="run measurements 5 and 6 with Django configured in the process (no "
        "soniq_sync.django app), add row 6c (enqueue inside transaction.atomic(), which "
        "joins Django's connection) and print what the transaction check costs",
    )
    ns = parser.parse_args(argv)
    quick: bool = ns.quick
    return Options(
        database_url=ns.database_url,
        rounds=ns.rounds or (1 if quick else 3),
        single=ns.single or (300 if quick else 5_000),
        bulk=ns.bulk or ((2_000,) if quick else (10_000, 100_000)),
        asyncpg=not ns.no_asyncpg,
        reference=ns.reference,
        quick=quick,
        django=ns.django,
    )


def _sizes(text: str) -> tuple[int, ...]:
    return tuple(positive(part) for part in text.split(",") if part.strip())


# --------------------------------------------------------------------------- results


@dataclass
class Result:
    """The timed rounds of one measured case."""

    key: str
    label: str
    jobs: int
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def rate(self) -> float:
        """Jobs per second at the median round."""
        return self.jobs / self.median

    @property
    def micros(self) -> float:
        """Microseconds per job at the median round."""
        return self.median / self.jobs * 1e6


@dataclass(frozen=True)
class Verdict:
    text: str
    target: str
    met: bool


# --------------------------------------------------------------------------- the bench


class Bench:
    """Connections, the app and the rounds of one run on the scratch database."""

    def __init__(self, url: str, asyncpg_dsn: dict[str, Any] | str, opts: Options) -> None:
        self.url = url
        self.asyncpg_dsn = asyncpg_dsn
        self.opts = opts
        self.app = Soniq(database_url=url)

        @self.app.job(name=JOB_NAME)
        async def noop(x: int) -> None:
            """Does nothing: only enqueueing is measured."""

        self.noop: Noop = noop
        # A producer service: no local handlers, names checked only against the pattern.
        self.producer = Soniq(database_url=url, enqueue_validation="none")
        spec = self.app.registry.get(JOB_NAME)
        assert spec is not None
        self.queue = spec.queue or "default"
        self.priority = spec.priority
        self.max_attempts = spec.max_attempts
        self.control: psycopg.AsyncConnection[Any] | None = None
        self.results: list[Result] = []
        #: With --django: µs per enqueue that the Django transaction check costs.
        self.check_costs: dict[str, float] = {}

    async def close(self) -> None:
        await self.app.close()
        await self.producer.close()
        if self.control is not None:
            await self.control.close()

    async def truncate(self) -> None:
        assert self.control is not None
        await self.control.execute("TRUNCATE soniq_jobs")

    async def measure(
        self, cases: Sequence[tuple[str, str, Round]], jobs: int, warmup: int
    ) -> list[Result]:
        """Warm each case up once, then time interleaved rounds (A, B, A, B, ...)."""
        results = [Result(key, label, jobs) for key, label, _ in cases]
        for _, _, run in cases:
            await self.truncate()
            await run(min(jobs, warmup))
        for _ in range(self.opts.rounds):
            for result, (_, _, run) in zip(results, cases, strict=True):
                await self.truncate()
                gc.collect()
                start = time.perf_counter()
                await run(jobs)
                result.seconds.append(time.perf_counter() - start)
        await self.truncate()
        self.results.extend(results)
        for result in results:
            print(f"  {result.key:<3} {result.label:<58} {result.rate:>11,.0f} jobs/s", flush=True)
        return results

    def bare_row(self, args: dict[str, Any]) -> tuple[str, str, str, str, int, int]:
        return (
            str(uuid.uuid4()),
            JOB_NAME,
            json.dumps(args),
            self.queue,
            self.priority,
            self.max_attempts,
        )

    # -- 1: one job at a time, autocommit ----------------------------------------------

    async def single_autocommit(self) -> list[Result]:
        app, noop = self.app, self.noop
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as bare:

            async def soniq_round(n: int) -> None:
                for i in range(n):
                    await app.enqueue(noop, x=i)

            async def bare_round(n: int) -> None:
                async with bare.cursor() as cur:
                    for i in range(n):
                        await cur.execute(BARE_INSERT, self.bare_row({"x": i}))

            async def same_sql_round(n: int) -> None:
                async with bare.cursor() as cur:
                    for i in range(n):
                        await cur.execute(INSERT_JOB, _insert_job_params(self.bare_row({"x": i})))
                        await cur.fetchall()

            cases: list[tuple[str, str, Round]] = [
                ("1a", "enqueue(noop, x=i) on Soniq's pool, autocommit", soniq_round),
                ("1b", "bare psycopg INSERT, one connection, autocommit", bare_round),
            ]
            if self.opts.reference:
                cases.append(("1c", "  ref: Soniq's insert_job SQL, bare conn", same_sql_round))
            return await self.measure(cases, self.opts.single, WARMUP_SINGLE)

    # -- 2: one job at a time, inside the caller's transaction ----------------------------

    async def single_in_transaction(self) -> list[Result]:
        app, noop = self.app, self.noop
        async with await psycopg.AsyncConnection.connect(self.url) as conn:

            async def soniq_round(n: int) -> None:
                async with conn.transaction():
                    for i in range(n):
                        await app.enqueue(noop, x=i, connection=conn)

            async def bare_round(n: int) -> None:
                async with conn.transaction(), conn.cursor() as cur:
                    for i in range(n):
                        await cur.execute(BARE_INSERT, self.bare_row({"x": i}))

            async def same_sql_round(n: int) -> None:
                async with conn.transaction(), conn.cursor() as cur:
                    for i in range(n):
                        await cur.execute(INSERT_JOB, _insert_job_params(self.bare_row({"x": i})))
                        await cur.fetchall()

            producer = self.producer

            async def by_name_round(n: int) -> None:
                async with conn.transaction():
                    for i in range(n):
                        await producer.enqueue(REMOTE_NAME, args={"x": i}, connection=conn)

            cases: list[tuple[str, str, Round]] = [
                ("2a", "enqueue(noop, x=i, connection=conn) in one transaction", soniq_round),
                ("2b", "bare psycopg INSERT in one transaction", bare_round),
            ]
            if self.opts.reference:
                cases.append(
                    ("2c", "  ref: Soniq's insert_job SQL in one transaction", same_sql_round)
                )
            cases.append(
                ("2d", "enqueue('<unregistered name>', args=, conn) validation none", by_name_round)
            )
            return await self.measure(cases, self.opts.single, WARMUP_SINGLE)

    # -- 3: enqueue_many on Soniq's pool vs a bare psycopg COPY -------------------------

    async def bulk_psycopg(self, jobs: int) -> list[Result]:
        app, noop = self.app, self.noop
        items = [{"x": i} for i in range(jobs)]
        async with await psycopg.AsyncConnection.connect(self.url) as conn:

            async def soniq_round(n: int) -> None:
                await app.enqueue_many(noop, items if n == jobs else items[:n])

            async def bare_round(n: int) -> None:
                async with conn.transaction(), conn.cursor() as cur, cur.copy(BARE_COPY) as copy:
                    for item in items if n == jobs else items[:n]:
                        await copy.write_row(self.bare_row(item))

            return await self.measure(
                [
                    ("3a", f"enqueue_many(noop, [{jobs:,} dicts]) on Soniq's pool", soniq_round),
                    ("3b", f"bare psycopg COPY of {jobs:,} rows in a transaction", bare_round),
                ],
                jobs,
                WARMUP_BULK,
            )

    # -- 4: enqueue_many through an asyncpg connection ---------------------------------

    async def bulk_asyncpg(self, asyncpg: Any, jobs: int) -> list[Result]:
        app, noop = self.app, self.noop
        items = [{"x": i} for i in range(jobs)]
        dsn = self.asyncpg_dsn
        conn = await (asyncpg.connect(dsn) if isinstance(dsn, str) else asyncpg.connect(**dsn))
        try:

            async def soniq_round(n: int) -> None:
                async with conn.transaction():
                    await app.enqueue_many(noop, items if n == jobs else items[:n], connection=conn)

            async def bare_round(n: int) -> None:
                records = []
                for item in items if n == jobs else items[:n]:
                    row = self.bare_row(item)
                    records.append((uuid.UUID(row[0]), *row[1:]))
                async with conn.transaction():
                    await conn.copy_records_to_table(
                        "soniq_jobs", records=records, columns=COPY_COLUMNS
                    )

            return await self.measure(
                [
                    ("4a", f"enqueue_many({jobs:,} dicts, connection=asyncpg conn)", soniq_round),
                    ("4b", f"bare asyncpg copy_records_to_table, {jobs:,} rows", bare_round),
                ],
                jobs,
                WARMUP_BULK,
            )
        finally:
            await conn.close()

    # -- 5 and 6: the blocking facade, soniq_sync ---------------------------------------

    async def sync_single(self) -> tuple[list[Result], list[Result]]:
        """soniq_sync.Soniq.enqueue vs bare INSERTs on a blocking psycopg connection.

        The rounds block the event loop on purpose: nothing else runs meanwhile. With
        --django they run in one thread of their own instead, because Django refuses
        database calls in a thread that runs an event loop.
        """
        app = soniq_sync.Soniq(database_url=self.url)

        @app.job(name=JOB_NAME)
        def noop(x: int) -> None:
            """Does nothing: only enqueueing is measured."""

        bare = psycopg.Connection.connect(self.url, autocommit=True)
        conn = psycopg.Connection.connect(self.url)
        thread = concurrent.futures.ThreadPoolExecutor(max_workers=1) if self.opts.django else None

        def blocking(calls: Callable[[int], None]) -> Round:
            async def run(n: int) -> None:
                if thread is None:
                    calls(n)
                else:
                    await asyncio.get_running_loop().run_in_executor(thread, calls, n)

            return run

        try:

            def pool_round(n: int) -> None:
                for i in range(n):
                    app.enqueue(noop, x=i)

            def bare_autocommit_round(n: int) -> None:
                with bare.cursor() as cur:
                    for i in range(n):
                        cur.execute(BARE_INSERT, self.bare_row({"x": i}))

            def txn_round(n: int) -> None:
                with conn.transaction():
                    for i in range(n):
                        app.enqueue(noop, x=i, connection=conn)

            def bare_txn_round(n: int) -> None:
                with conn.transaction(), conn.cursor() as cur:
                    for i in range(n):
                        cur.execute(BARE_INSERT, self.bare_row({"x": i}))

            txn_cases: list[tuple[str, str, Round]] = [
                ("6a", "soniq_sync enqueue(..., connection=conn) in one txn", blocking(txn_round)),
                ("6b", "bare blocking psycopg INSERT in one transaction", blocking(bare_txn_round)),
            ]
            if thread is not None:
                from django.db import transaction

                def atomic_round(n: int) -> None:
                    with transaction.atomic():
                        for i in range(n):
                            app.enqueue(noop, x=i)

                label = "soniq_sync enqueue(noop, x=i) in one transaction.atomic()"
                txn_cases.append(("6c", label, blocking(atomic_round)))

            r5 = await self.measure(
                [
                    (
                        "5a",
                        "soniq_sync enqueue(noop, x=i) on its pool, autocommit",
                        blocking(pool_round),
                    ),
                    (
                        "5b",
                        "bare blocking psycopg INSERT, autocommit",
                        blocking(bare_autocommit_round),
                    ),
                ],
                self.opts.single,
                WARMUP_SINGLE,
            )
            r6 = await self.measure(txn_cases, self.opts.single, WARMUP_SINGLE)
            if thread is not None:
                loop = asyncio.get_running_loop()
                self.check_costs = await loop.run_in_executor(thread, django_check_costs, app)
            return r5, r6
        finally:
            app.close()
            bare.close()
            conn.close()
            if thread is not None:
                thread.shutdown()

    # -- the run ---------------------------------------------------------------------

    async def run(self) -> list[Verdict]:
        self.control = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        await self.app.setup()
        # Rounds are short and the table is truncated between them; keep autovacuum
        # from waking up in the middle of one.
        await self.control.execute("ALTER TABLE soniq_jobs SET (autovacuum_enabled = false)")
        verdicts: list[Verdict] = []

        print("1. single enqueue, autocommit", flush=True)
        r1 = await self.single_autocommit()
        ratio1 = r1[0].rate / r1[1].rate
        verdicts.append(
            Verdict(
                f"1  single enqueue / bare INSERT, autocommit: {ratio1:.2f}x throughput",
                ">= 0.80x",
                ratio1 >= 0.80,
            )
        )

        print("2. single enqueue inside the caller's transaction", flush=True)
        r2 = await self.single_in_transaction()
        ratio2 = r2[0].median / r2[1].median
        verdicts.append(
            Verdict(
                f"2  enqueue(connection=) / bare INSERT, in a txn: {ratio2:.2f}x cost",
                "<= 1.25x",
                ratio2 <= 1.25,
            )
        )

        print("3. enqueue_many on Soniq's pool (psycopg COPY)", flush=True)
        for n in self.opts.bulk:
            r3 = await self.bulk_psycopg(n)
            verdicts.append(
                Verdict(
                    f"3  enqueue_many {n:,}: {r3[0].rate:,.0f} jobs/s "
                    f"({r3[0].rate / r3[1].rate:.2f}x bare COPY)",
                    ">= 150,000/s",
                    r3[0].rate >= 150_000,
                )
            )

        asyncpg = _import_asyncpg() if self.opts.asyncpg else None
        if asyncpg is not None:
            print("4. enqueue_many through an asyncpg connection", flush=True)
            for n in self.opts.bulk:
                r4 = await self.bulk_asyncpg(asyncpg, n)
                verdicts.append(
                    Verdict(
                        f"4  enqueue_many {n:,} via asyncpg: {r4[0].rate:,.0f} jobs/s "
                        f"({r4[0].rate / r4[1].rate:.2f}x bare asyncpg COPY)",
                        ">= 150,000/s",
                        r4[0].rate >= 150_000,
                    )
                )
        else:
            reason = "--no-asyncpg" if not self.opts.asyncpg else "asyncpg is not installed"
            print(f"4. skipped ({reason})", flush=True)

        if self.opts.django:
            print("5-6. soniq_sync, the blocking facade, with Django configured", flush=True)
            configure_django(self.url)
        else:
            print("5-6. soniq_sync, the blocking facade", flush=True)
        r5, r6 = await self.sync_single()
        for what, micros in self.check_costs.items():
            print(f"  transaction check, {what}: {micros:.2f} µs per enqueue", flush=True)
        ratio5 = r5[0].rate / r5[1].rate
        ratio6 = r6[0].median / r6[1].median
        verdicts.append(
            Verdict(
                f"5  soniq_sync enqueue / bare INSERT, autocommit: {ratio5:.2f}x throughput",
                ">= 0.80x",
                ratio5 >= 0.80,
            )
        )
        verdicts.append(
            Verdict(
                f"6  soniq_sync enqueue(connection=) / bare INSERT, in a txn: {ratio6:.2f}x cost",
                "<= 1.25x",
                ratio6 <= 1.25,
            )
        )
        return verdicts


def configure_django(url: str) -> None:
    """Django configured on the scratch database, as a project without soniq_sync.django."""
    import django
    from django.conf import settings

    params = conninfo.conninfo_to_dict(url)
    keys = (("NAME", "dbname"), ("USER", "user"), ("PASSWORD", "password"))
    database = {key: params.get(p, "") for key, p in (*keys, ("HOST", "host"), ("PORT", "port"))}
    settings.configure(
        DATABASES={"default": {"ENGINE": "django.db.backends.postgresql", **database}},
        INSTALLED_APPS=[],
        USE_TZ=True,
    )
    django.setup()


def django_check_costs(app: soniq_sync.Soniq) -> dict[str, float]:
    """µs per call of the check each enqueue makes, outside and inside an atomic block.

    This is the app's private ``_current_connection``: what the enqueue asks before
    writing, without the write.
    """
    import timeit

    from django.db import connection, transaction

    connection.ensure_connection()  # as in a view that has run a query already
    calls = 20_000
    costs: dict[str, float] = {}
    costs["outside a transaction"] = timeit.timeit(
        lambda: app._current_connection(None), number=calls
    )
    with transaction.atomic():
        costs["inside transaction.atomic() (joins it)"] = timeit.timeit(
            lambda: app._current_connection(None), number=calls
        )
    return {what: seconds / calls * 1e6 for what, seconds in costs.items()}


def _insert_job_params(row: tuple[str, str, str, str, int, int]) -> dict[str, Any]:
    job_id, name, args, queue, priority, max_attempts = row
    return {
        "id": job_id,
        "job_name": name,
        "args": args,
        "queue": queue,
        "priority": priority,
        "max_attempts": max_attempts,
        "dedup_key": None,
        "scheduled_at": None,
    }


def _import_asyncpg() -> Any:
    try:
        import asyncpg
    except ImportError:
        return None
    return asyncpg


# --------------------------------------------------------------------------- report


def print_report(bench: Bench, verdicts: list[Verdict], header: list[str]) -> None:
    width = 64
    print()
    for line in header:
        print(line)
    print()
    print(
        f"{'#':<3} {'case':<{width}} {'jobs/round':>10} {'jobs/s':>11} {'µs/job':>8} "
        f"{'rounds: min..max jobs/s':>24}"
    )
    print("-" * (width + 61))
    for r in bench.results:
        lo = r.jobs / max(r.seconds)
        hi = r.jobs / min(r.seconds)
        print(
            f"{r.key:<3} {r.label:<{width}} {r.jobs:>10,} {r.rate:>11,.0f} {r.micros:>8.1f} "
            f"{f'{lo:,.0f}..{hi:,.0f}':>24}"
        )
    print()
    print("Against the targets (informational only; nothing here fails the run):")
    for v in verdicts:
        print(f"  {v.text:<80} target {v.target:<13} {'met' if v.met else 'MISSED'}")


async def describe(url: str, opts: Options) -> list[str]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute("SHOW server_version")
        row = await cur.fetchone()
    server = row[0] if row else "?"
    asyncpg = _import_asyncpg()
    return [
        f"soniq {soniq.__version__}; Python {platform.python_version()}; psycopg "
        f"{psycopg.__version__} ({psycopg.pq.__impl__}); asyncpg "
        f"{asyncpg.__version__ if asyncpg else 'not installed'}; PostgreSQL {server}; "
        f"{os.cpu_count()} CPUs",
        f"median of {opts.rounds} timed round(s) after 1 shorter warm-up round; soniq_jobs "
        f"truncated before every round{'; --quick' if opts.quick else ''}",
        f"load average at start {loadavg()} (other work on the box skews the figures)",
    ]


# --------------------------------------------------------------------------- database


def asyncpg_dsn(url: str) -> dict[str, Any] | str:
    """asyncpg takes URLs but not key=value conninfo strings; translate the latter."""
    if "://" in url:
        return url
    params = conninfo.conninfo_to_dict(url)
    keys = {"host": "host", "port": "port", "user": "user", "password": "password"}
    dsn: dict[str, Any] = {k: params[p] for k, p in keys.items() if params.get(p)}
    dsn["database"] = params.get("dbname")
    return dsn


async def main_async(opts: Options) -> int:
    # SIGTERM cancels the run like Ctrl-C does, so the scratch database is still dropped.
    task = asyncio.current_task()
    if task is not None:
        with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    admin_url = normalise_database_url(opts.database_url)
    scratch = Scratch(admin_url)
    try:
        url = await scratch.create()
    except psycopg.Error as exc:
        print(f"Cannot create a scratch database on {admin_url}: {exc}", file=sys.stderr)
        return 2
    bench = Bench(url, asyncpg_dsn(url), opts)
    try:
        header = await describe(url, opts)
        verdicts = await bench.run()
        print_report(bench, verdicts, header)
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
