"""What completing a job in the handler's transaction costs, against the tree before it.

    python benchmarks/completion.py --base-src /work/wt/pre17/src
    python benchmarks/completion.py --jobs 5000 --rounds 1      # smoke run

Every measurement is one subprocess of this script (``--child``, printing JSON) with
``PYTHONPATH`` at one tree's ``src``, on a scratch database it creates, sets up with
that tree's migrations, and drops. Rounds interleave the trees (the pair's order flips
each round); medians are printed. The measurements:

1. **Unused cost**: a drain of ``--jobs`` no-op jobs (``run_worker(run_once=True)``,
   concurrency 64), new tree against base; the issue's gate is 98%. During the new
   tree's drain a connection LISTENs on ``soniq_job_events`` and counts what arrives:
   with nothing watched it must be 0.
2. **Managed transactional no-op jobs** (``@app.job(transactional=True)``, the handler
   returns at once) at concurrency 64: jobs/s, absolute; the gate is 2,500 jobs/s.
3. **Explicit** ``ctx.complete(conn)`` on a connection of the handler's own pool (a
   psycopg ``AsyncConnectionPool`` of 64), concurrency 64: jobs/s, a figure only.
4. **Mixed**: the drain of ``--jobs`` plain jobs while as many managed transactional
   jobs share the queue; the plain jobs' rate is printed beside measurement 1's.
5. **The box's ceiling**: psycopg alone, 64 tasks on a pool of 64, each doing BEGIN,
   a one-row UPDATE, COMMIT (and, beside it, the UPDATE alone in autocommit): what a
   transaction per job can reach here at all, to read measurement 2 against.

A drain's rate is its jobs over the span from the first handler's start to the last
handler's end. The script prints figures and the load average; it never fails on a
slow result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

HERE: Final = Path(__file__).resolve().parent
NEW_SRC: Final = HERE.parent / "src"
RESULT: Final = "RESULT "
DEFAULT_URL: Final = "postgresql://postgres@127.0.0.1:5432/postgres"


def parse_args() -> argparse.Namespace:
    sys.path.insert(0, str(HERE))
    from support import positive

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url", default=os.environ.get("SONIQ_DATABASE_URL") or DEFAULT_URL
    )
    parser.add_argument("--base-src", type=Path, default=Path("/work/wt/pre17/src"))
    parser.add_argument("--new-src", type=Path, default=NEW_SRC)
    parser.add_argument("--jobs", type=positive, default=20_000)
    parser.add_argument("--tx-jobs", type=positive, default=10_000)
    parser.add_argument("--rounds", type=positive, default=3)
    parser.add_argument("--concurrency", type=positive, default=64)
    parser.add_argument("--child", help=argparse.SUPPRESS)  # plain|managed|explicit|mixed
    return parser.parse_args()


# --------------------------------------------------------------------------- the child


class Stamps:
    def __init__(self) -> None:
        self.first: float | None = None
        self.last = 0.0
        self.count = 0

    def hit(self) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.last = now
        self.count += 1

    def rate(self) -> float:
        span = self.last - (self.first or self.last)
        return self.count / span if span > 0 else float("nan")


async def child(ns: argparse.Namespace) -> dict[str, Any]:
    import psycopg
    from psycopg_pool import AsyncConnectionPool
    from support import Scratch

    from soniq import JobContext, Soniq

    scratch = Scratch(ns.database_url)
    url = await scratch.create()
    try:
        app = Soniq(database_url=url)
        plain, tx = Stamps(), Stamps()
        pool: Any = None

        @app.job(name="bench.noop")
        async def noop(x: int) -> None:
            plain.hit()

        if ns.child in ("managed", "mixed"):

            @app.job(name="bench.managed", transactional=True)
            async def managed(x: int, ctx: JobContext) -> None:
                tx.hit()

        if ns.child == "explicit":
            pool = AsyncConnectionPool(url, min_size=ns.concurrency, max_size=ns.concurrency)
            await pool.open(wait=True)

            @app.job(name="bench.explicit")
            async def explicit(x: int, ctx: JobContext) -> None:
                async with pool.connection() as conn, conn.transaction():
                    await ctx.complete(conn)
                tx.hit()

        await app.setup()
        await app.ensure_initialized()
        if ns.child in ("plain", "mixed"):
            await app.enqueue_many("bench.noop", [{"x": i} for i in range(ns.jobs)])
        if ns.child != "plain":
            name = "bench.explicit" if ns.child == "explicit" else "bench.managed"
            await app.enqueue_many(name, [{"x": i} for i in range(ns.tx_jobs)])
        events = 0
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute("ANALYZE soniq_jobs")
            await conn.execute("CHECKPOINT")
        spy = await psycopg.AsyncConnection.connect(url, autocommit=True)
        try:
            # Absent before 0012: the spy then listens to a channel nobody uses.
            await spy.execute("LISTEN soniq_job_events")
            t0 = time.perf_counter()
            await app.run_worker(concurrency=ns.concurrency, run_once=True)
            wall = time.perf_counter() - t0
            async for _ in _drain(spy):
                events += 1
        finally:
            await spy.close()
        if pool is not None:
            await pool.close()
        await app.close()
        return {
            "plain": plain.rate() if plain.count else None,
            "tx": tx.rate() if tx.count else None,
            "count": plain.count + tx.count,
            "events": events,
            "wall": wall,
        }
    finally:
        await scratch.drop_all()


async def ceiling(ns: argparse.Namespace) -> dict[str, Any]:
    """Transactions per second of psycopg alone (measurement 5)."""
    from psycopg_pool import AsyncConnectionPool
    from support import Scratch

    scratch = Scratch(ns.database_url)
    url = await scratch.create()
    rates: dict[str, Any] = {}
    try:
        pool = AsyncConnectionPool(
            url, min_size=64, max_size=64, kwargs={"autocommit": True}, open=False
        )
        await pool.open(wait=True)
        async with pool.connection() as conn:
            await conn.execute("CREATE TABLE bench (id int PRIMARY KEY, n int NOT NULL)")
            await conn.execute("INSERT INTO bench SELECT g, 0 FROM generate_series(1, 64) g")
        for mode in ("transaction", "autocommit"):
            done = 0

            async def loop(i: int, mode: str = mode) -> None:
                nonlocal done
                while done < ns.tx_jobs:
                    async with pool.connection() as conn:
                        if mode == "transaction":
                            async with conn.transaction():
                                await conn.execute(
                                    "UPDATE bench SET n = n + 1 WHERE id = %s", (i + 1,)
                                )
                        else:
                            await conn.execute("UPDATE bench SET n = n + 1 WHERE id = %s", (i + 1,))
                    done += 1

            t0 = time.perf_counter()
            await asyncio.gather(*(loop(i) for i in range(64)))
            rates[mode] = done / (time.perf_counter() - t0)
        await pool.close()
    finally:
        await scratch.drop_all()
    return rates


async def _drain(conn: Any) -> Any:
    """The notifications already received on ``conn``, without waiting for more."""
    gen = conn.notifies(timeout=0.5)
    async for note in gen:
        yield note


def run_child(ns: argparse.Namespace, src: Path, scenario: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SONIQ_")}
    env["PYTHONPATH"] = f"{src}{os.pathsep}{HERE}"
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        scenario,
        "--database-url",
        ns.database_url,
        "--jobs",
        str(ns.jobs),
        "--tx-jobs",
        str(ns.tx_jobs),
        "--concurrency",
        str(ns.concurrency),
    ]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"child {scenario} ({src}) failed:\n{proc.stdout}\n{proc.stderr}")
    return dict(json.loads(lines[-1][len(RESULT) :]))


def main() -> int:
    ns = parse_args()
    if ns.child:
        out = asyncio.run(ceiling(ns) if ns.child == "ceiling" else child(ns))
        print(RESULT + json.dumps(out), flush=True)
        return 0
    from support import loadavg

    print(f"load average at start: {loadavg()}")
    base_rates: list[float] = []
    new_rates: list[float] = []
    events: list[int] = []
    managed: list[float] = []
    explicit: list[float] = []
    mixed: list[float] = []
    raw: list[dict[str, float]] = []
    for round_no in range(ns.rounds):
        pair = [("base", ns.base_src), ("new", ns.new_src)]
        if round_no % 2:
            pair.reverse()
        for label, src in pair:
            out = run_child(ns, src, "plain")
            (base_rates if label == "base" else new_rates).append(out["plain"])
            if label == "new":
                events.append(out["events"])
            print(f"round {round_no + 1} {label} plain drain: {out['plain']:,.0f} jobs/s")
        out = run_child(ns, ns.new_src, "managed")
        managed.append(out["tx"])
        print(f"round {round_no + 1} managed transactional: {out['tx']:,.0f} jobs/s")
        out = run_child(ns, ns.new_src, "explicit")
        explicit.append(out["tx"])
        print(f"round {round_no + 1} explicit ctx.complete: {out['tx']:,.0f} jobs/s")
        out = run_child(ns, ns.new_src, "mixed")
        mixed.append(out["plain"])
        print(
            f"round {round_no + 1} mixed: plain {out['plain']:,.0f} jobs/s beside "
            f"transactional {out['tx']:,.0f} jobs/s"
        )
        out = run_child(ns, ns.new_src, "ceiling")
        raw.append(out)
        print(
            f"round {round_no + 1} psycopg alone: {out['transaction']:,.0f} transactions/s, "
            f"{out['autocommit']:,.0f} autocommit UPDATEs/s"
        )
    med = statistics.median
    print()
    print(
        f"1. unused: new {med(new_rates):,.0f} vs base {med(base_rates):,.0f} jobs/s = "
        f"{100 * med(new_rates) / med(base_rates):.1f}% (gate 98%); "
        f"job events during the new drains: {sum(events)} (must be 0)"
    )
    print(f"2. managed transactional no-op: {med(managed):,.0f} jobs/s (gate 2,500)")
    print(f"3. explicit ctx.complete on an own pool: {med(explicit):,.0f} jobs/s")
    print(f"4. plain jobs beside transactional ones: {med(mixed):,.0f} jobs/s")
    print(
        f"5. psycopg alone at 64: {med([r['transaction'] for r in raw]):,.0f} transactions/s "
        f"(BEGIN, UPDATE, COMMIT), {med([r['autocommit'] for r in raw]):,.0f} autocommit "
        "UPDATEs/s"
    )
    print(f"load average at end: {loadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
