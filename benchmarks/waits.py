"""What waiting for jobs costs: unused (the drain) and used (1,000 concurrent waits).

Run it from the tree with waiting, naming the baseline tree's ``src``::

    git worktree add --detach /work/wt/wait-base ac01706
    python benchmarks/waits.py --base-src /work/wt/wait-base/src
    python benchmarks/waits.py --jobs 5000 --rounds 1 --race 1000   # smoke run

As in ``limits.py``, every measurement is a subprocess of this script (``--child``,
printing its figures as JSON) with ``PYTHONPATH`` set to one tree's ``src``, on a
scratch database ``soniq_bench_<random>`` that it creates, sets up and drops. Rounds
run interleaved (base, new, then new, base...) and medians are printed.

1. **Unused cost**: a drain of ``--jobs`` no-op jobs (``enqueue_many``, then
   ``run_worker(run_once=True, concurrency=64)``) in each tree; the rate is jobs over
   the span from the first handler's start to the last one's end. In the new tree a
   LISTEN spy on ``soniq_job_events`` counts the notifications the drain sent (the
   target is none: nothing is watched). Target: new >= 98% of base.
2. **Used**: ``--waits`` (1,000) concurrent tasks, each enqueueing one no-op job
   (``watch=True``; ``--no-watch``: without) and waiting for it with
   ``app.handle(id).result()``, against a worker (concurrency 64) in a process of its
   own, whose jobs return their handler's end time: the waiting overhead (the wait's
   return minus the later of the enqueue's return and the handler's end) and enqueue
   to return, p50 and p95, and the number of LISTEN connections (target: one) seen
   while they wait; then the same overhead for 200 waits one at a time. Target: p50
   overhead < 10 ms.
   **1b.** The acknowledgement statement alone: ``complete_jobs`` with and without
   its new RETURNING column, alternated on 500-row batches in one process (less
   moved by the box's load than whole drains).
3. **Race**: ``--race`` (10,000) iterations of enqueue, then at once wait (timeout
   3 s, safety poll 60 s), four loops side by side: how many timed out (target: none).

The script prints figures and never fails on a slow result; it prints the load
average at the start and the end, since the box is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

DEFAULT_URL: Final = "postgresql://postgres@127.0.0.1:5432/postgres"
HERE: Final = Path(__file__).resolve().parent
NEW_SRC: Final = HERE.parent / "src"
RESULT: Final = "RESULT "
CHILD_TIMEOUT: Final = 900.0
SEQUENTIAL: Final = 200  # measurement 2's waits one at a time
SCRIPT: Final = str(Path(__file__).resolve())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    sys.path.insert(0, str(HERE))
    from support import positive

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url", default=os.environ.get("SONIQ_DATABASE_URL") or DEFAULT_URL
    )
    parser.add_argument("--base-src", type=Path, default=Path("/work/wt/wait-base/src"))
    parser.add_argument("--new-src", type=Path, default=NEW_SRC)
    parser.add_argument("--jobs", type=positive, default=20_000, help="jobs per drain")
    parser.add_argument("--rounds", type=positive, default=3)
    parser.add_argument("--concurrency", type=positive, default=64)
    parser.add_argument("--waits", type=positive, default=1_000, help="concurrent waits")
    parser.add_argument("--race", type=int, default=10_000, help="race iterations (0: skip)")
    parser.add_argument(
        "--only",
        default="drain,complete,waits,race",
        help="measurements to run (default %(default)s)",
    )
    parser.add_argument(
        "--no-watch",
        dest="watch",
        action="store_false",
        help="measurement 2 enqueues without watch=True (each wait marks its job)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)  # drain|waits|race|worker
    parser.add_argument("--worker-url", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


# --------------------------------------------------------------------------- children


async def child_drain(ns: argparse.Namespace, url: str) -> dict[str, Any]:
    import psycopg

    from soniq import Soniq

    app = Soniq(database_url=url)
    first: list[float] = []
    last = [0.0]

    @app.job(name="bench.noop")
    async def noop(x: int) -> None:
        if not first:
            first.append(time.perf_counter())
        last[0] = time.perf_counter()

    await app.setup()
    await app.ensure_initialized()
    await app.enqueue_many(noop, [{"x": i} for i in range(ns.jobs)])
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("ANALYZE soniq_jobs")
        await conn.execute("CHECKPOINT")
    gc.collect()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as spy:
        await spy.execute("LISTEN soniq_job_events")
        started = time.perf_counter()
        await app.run_worker(concurrency=ns.concurrency, run_once=True)
        wall = time.perf_counter() - started
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as other:
            await other.execute("SELECT pg_notify('soniq_job_events', 'marker')")
            cur = await other.execute("SELECT count(*) FROM soniq_jobs WHERE status = 'done'")
            row = await cur.fetchone()
        heard = 0
        async for note in spy.notifies(timeout=30):
            if note.payload == "marker":
                break
            heard += 1
    await app.close()
    return {
        "jobs": ns.jobs,
        "done": int(row[0]) if row else 0,
        "span": last[0] - first[0],
        "wall": wall,
        "events": heard,
    }


async def child_complete(ns: argparse.Namespace, url: str) -> dict[str, Any]:
    """1b: the acknowledgement statement alone, before and after its one more RETURNING
    column, alternated on the same table: 500-row batches of claimed rows, each batch
    completed by one form or the other (medians of ``ROUNDS`` batches each)."""
    import psycopg

    from soniq import Soniq
    from soniq.storage.queries import QUERIES

    rounds, size = 200, 500
    app = Soniq(database_url=url)
    await app.setup()
    await app.close()
    new = QUERIES["complete_jobs"].psycopg
    old = new.replace(b"RETURNING j.id, j.watched", b"RETURNING j.id")
    assert old != new, "complete_jobs has no watched column to compare"
    seconds: dict[str, list[float]] = {"old": [], "new": []}
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for r in range(rounds * 2 + 2):
            await conn.execute("TRUNCATE soniq_jobs")
            cur = await conn.execute(
                "INSERT INTO soniq_jobs (id, job_name, args, queue, priority, max_attempts, "
                "status, attempts) SELECT gen_random_uuid(), 'bench', '{}', 'default', 100, 1, "
                "'processing', 1 FROM generate_series(1, %s) RETURNING id::text",
                (size,),
            )
            ids = [row[0] for row in await cur.fetchall()]
            params = {
                "ids": "{" + ",".join(ids) + "}",
                "attempts": "{" + ",".join(["1"] * size) + "}",
                "results": "[" + ",".join(["null"] * size) + "]",
            }
            form = "new" if (r % 2 == 0) ^ (r % 4 < 2) else "old"
            t0 = time.perf_counter()
            cur = await conn.execute(new if form == "new" else old, params)
            rows = await cur.fetchall()
            if r >= 2:  # the first two warm up
                seconds[form].append(time.perf_counter() - t0)
            assert len(rows) == size
    return {
        "old_ms": statistics.median(seconds["old"]) * 1000,
        "new_ms": statistics.median(seconds["new"]) * 1000,
        "batches": rounds,
        "size": size,
    }


async def child_worker(ns: argparse.Namespace) -> None:
    """The worker of measurement 2, in a process of its own (``--worker-url``): each
    job returns the wall-clock time its handler ended."""
    import signal

    from soniq import Soniq

    app = Soniq(database_url=ns.worker_url)

    @app.job(name="bench.clock")
    async def clock(i: int) -> float:
        return time.time()

    worker = app.worker()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, worker.stop)
    await app.ensure_initialized()
    await worker.run(concurrency=ns.concurrency)
    await app.close()


async def child_waits(ns: argparse.Namespace, url: str) -> dict[str, Any]:
    import psycopg

    from soniq import Soniq, task_ref

    app = Soniq(database_url=url)
    clock = task_ref("bench.clock")  # the handler is the worker process's
    await app.setup()
    await app.ensure_initialized()
    listening: list[int] = []
    if ns.child == "waits-first":
        return await registered_first(ns, app, clock)
    worker = await spawn_worker(ns, url)
    try:
        for _ in range(50):  # warm up: the worker, pools, statements, the hub's listener
            await app.handle(await app.enqueue(clock, args={"i": -1})).result(timeout=60)
        gate = asyncio.Event()
        times: dict[int, tuple[float, float, float, float]] = {}

        async def one(i: int) -> None:
            await gate.wait()
            t0 = time.time()
            job_id = await app.enqueue(clock, args={"i": i}, watch=ns.watch)
            t1 = time.time()
            ended = await app.handle(job_id).result(timeout=120)
            times[i] = (t0, t1, float(ended), time.time())

        async def count_listeners() -> None:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                while len(times) < ns.waits:
                    cur = await conn.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%' "
                        "AND application_name = 'soniq-waits' AND datname = current_database()"
                    )
                    row = await cur.fetchone()
                    listening.append(int(row[0]) if row else 0)
                    await asyncio.sleep(0.05)

        tasks = [asyncio.create_task(one(i)) for i in range(ns.waits)]
        counter = asyncio.create_task(count_listeners())
        started = time.perf_counter()
        gate.set()
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - started
        await counter
        # One at a time: what a wait adds when nothing else is going on.
        alone: list[float] = []
        for _ in range(SEQUENTIAL):
            job_id = await app.enqueue(clock, args={"i": -1}, watch=ns.watch)
            enqueued = time.time()
            ended = await app.handle(job_id).result(timeout=60)
            alone.append((time.time() - max(enqueued, float(ended))) * 1000)
        alone.sort()
    finally:
        worker.terminate()
        await worker.wait()
        await app.close()
    # What the wait adds: from the later of "the caller has the id" and "the handler
    # has returned" to the wait's return (the acknowledgement's commit is in it).
    overhead = sorted((t[3] - max(t[1], t[2])) * 1000 for t in times.values())
    total = sorted((t[3] - t[0]) * 1000 for t in times.values())
    return {
        "waits": ns.waits,
        "wall": wall,
        "overhead_p50": statistics.median(overhead),
        "overhead_p95": overhead[int(0.95 * len(overhead)) - 1],
        "total_p50": statistics.median(total),
        "total_p95": total[int(0.95 * len(total)) - 1],
        "listeners_max": max(listening or [0]),
        "listeners_min": min(listening or [0]),
        "alone_p50": statistics.median(alone),
        "alone_p95": alone[int(0.95 * len(alone)) - 1],
    }


async def spawn_worker(ns: argparse.Namespace, url: str) -> asyncio.subprocess.Process:
    """Start measurement 2's worker process (see ``child_worker``)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        SCRIPT,
        "--child",
        "worker",
        "--worker-url",
        url,
        "--concurrency",
        str(ns.concurrency),
    )


async def registered_first(ns: argparse.Namespace, app: Any, clock: Any) -> dict[str, Any]:
    """2b: ``--waits`` jobs enqueued at once (``enqueue_many``) and waited for, every
    wait registered before the worker process starts: the overhead of the waiting
    alone, without the enqueues' burst on the same event loop."""
    ids = await app.enqueue_many(clock, [{"i": i} for i in range(ns.waits)], watch=ns.watch)
    returned: dict[str, tuple[float, float]] = {}

    async def one(job_id: str) -> None:
        ended = await app.handle(job_id).result(timeout=120)
        returned[job_id] = (float(ended), time.time())

    tasks = [asyncio.create_task(one(job_id)) for job_id in ids]
    hub = app._wait_hub
    while hub is None or hub.pending < ns.waits or not hub.listening:
        await asyncio.sleep(0.01)
        hub = app._wait_hub
    await asyncio.sleep(0.2)  # let the marks' reads finish
    url = app.settings.database_url
    worker = await spawn_worker(ns, url)
    started = time.perf_counter()
    try:
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - started
    finally:
        worker.terminate()
        await worker.wait()
        await app.close()
    overhead = sorted((back - ended) * 1000 for ended, back in returned.values())
    return {
        "waits": ns.waits,
        "wall": wall,
        "overhead_p50": statistics.median(overhead),
        "overhead_p95": overhead[int(0.95 * len(overhead)) - 1],
    }


async def child_race(ns: argparse.Namespace, url: str) -> dict[str, Any]:
    from soniq import Soniq

    app = Soniq(database_url=url, wait_poll=60.0, poll_interval=60.0)

    @app.job(name="bench.noop")
    async def noop() -> None:
        return None

    await app.setup()
    await app.ensure_initialized()
    worker = app.worker()
    run = asyncio.create_task(worker.run(concurrency=16))
    timeouts = [0]
    latencies: list[float] = []

    async def loop(n: int, watch: bool) -> None:
        for _ in range(n):
            t0 = time.perf_counter()
            job_id = await app.enqueue(noop, watch=watch)
            try:
                await app.handle(job_id).wait(timeout=3)
            except TimeoutError:
                timeouts[0] += 1
            latencies.append((time.perf_counter() - t0) * 1000)

    started = time.perf_counter()
    try:
        per = ns.race // 4
        await asyncio.gather(*(loop(per, watch=i % 2 == 0) for i in range(4)))
    finally:
        worker.stop()
        await run
        await app.close()
    latencies.sort()
    return {
        "iterations": len(latencies),
        "timeouts": timeouts[0],
        "wall": time.perf_counter() - started,
        "p50": statistics.median(latencies),
        "p99": latencies[int(0.99 * len(latencies)) - 1],
    }


async def child_main(ns: argparse.Namespace) -> dict[str, Any]:
    from support import Scratch

    scratch = Scratch(ns.database_url)
    url = await scratch.create()
    try:
        runner = {
            "drain": child_drain,
            "waits": child_waits,
            "waits-first": child_waits,
            "race": child_race,
            "complete": child_complete,
        }[ns.child]
        out = await runner(ns, url)
    finally:
        await scratch.drop_all()
    return out


# --------------------------------------------------------------------------- the parent


def run_child(ns: argparse.Namespace, src: Path, scenario: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SONIQ_")}
    env["PYTHONPATH"] = f"{src}{os.pathsep}{HERE}"
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", scenario]
    argv += ["--database-url", ns.database_url, "--jobs", str(ns.jobs)]
    argv += ["--concurrency", str(ns.concurrency), "--waits", str(ns.waits)]
    argv += ["--race", str(ns.race)] + ([] if ns.watch else ["--no-watch"])
    proc = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT, check=False
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"child {scenario} ({src}) failed:\n{proc.stdout}\n{proc.stderr}")
    out: dict[str, Any] = json.loads(lines[-1][len(RESULT) :])
    if Path(out["soniq"]) != src.resolve():
        raise RuntimeError(f"child {scenario} imported soniq from {out['soniq']}, not {src}")
    return out


def parent_main(ns: argparse.Namespace) -> int:
    base_src, new_src = ns.base_src.resolve(), ns.new_src.resolve()
    print(f"load average at the start: {loadavg()}")
    print(f"base: {base_src}\nnew:  {new_src}", flush=True)
    only = {part.strip() for part in ns.only.split(",")}
    rates: dict[str, list[float]] = {"base": [], "new": []}
    events: list[int] = []
    for r in range(1, ns.rounds + 1 if "drain" in only else 1):
        order = [("base", base_src), ("new", new_src)]
        if r % 2 == 0:
            order.reverse()
        for name, src in order:
            out = run_child(ns, src, "drain")
            rate = out["jobs"] / out["span"]
            rates[name].append(rate)
            if name == "new":
                events.append(out["events"])
            print(
                f"  round {r} {name:<4} drain {out['jobs']:,} jobs: {rate:,.0f} jobs/s "
                f"(run_worker {out['wall']:.2f} s, {out['done']:,} done, "
                f"{out['events']} job-event notifications)  load {loadavg()}",
                flush=True,
            )
    if "drain" in only:
        base, new = statistics.median(rates["base"]), statistics.median(rates["new"])
        paired = statistics.median(n / b for n, b in zip(rates["new"], rates["base"], strict=True))
        best = max(rates["new"]) / max(rates["base"])
        print(
            f"1. drain, nothing watched: base {base:,.0f} jobs/s, new {new:,.0f} jobs/s, "
            f"ratio {new / base:.1%} (paired {paired:.1%}, best rounds {best:.1%}); "
            f"job-event notifications during the new drains: {events}"
        )
    if "complete" in only:
        out = run_child(ns, new_src, "complete")
        print(
            f"1b. complete_jobs, {out['size']}-row batches, {out['batches']} each: "
            f"RETURNING j.id {out['old_ms']:.2f} ms, RETURNING j.id, j.watched "
            f"{out['new_ms']:.2f} ms ({out['new_ms'] / out['old_ms']:.1%})",
            flush=True,
        )
    if "waits" in only:
        print_waits(ns, new_src)
    if ns.race and "race" in only:
        out = run_child(ns, new_src, "race")
        print(
            f"3. race: {out['iterations']:,} enqueue-then-wait iterations (4 loops): "
            f"{out['timeouts']} timed out; p50 {out['p50']:.1f} ms, p99 {out['p99']:.1f} "
            f"ms; {out['wall']:.1f} s"
        )
    print(f"load average at the end: {loadavg()}")
    return 0


def print_waits(ns: argparse.Namespace, new_src: Path) -> None:
    out = run_child(ns, new_src, "waits")
    print(
        f"2. {out['waits']:,} concurrent enqueue+wait: overhead beyond the handler's end "
        f"p50 {out['overhead_p50']:.1f} ms, p95 {out['overhead_p95']:.1f} ms; enqueue to "
        f"return p50 {out['total_p50']:.1f} ms, p95 {out['total_p95']:.1f} ms; all in "
        f"{out['wall']:.2f} s; LISTEN connections seen {out['listeners_min']}.."
        f"{out['listeners_max']}; one at a time ({SEQUENTIAL}): overhead p50 "
        f"{out['alone_p50']:.1f} ms, p95 {out['alone_p95']:.1f} ms",
        flush=True,
    )
    out = run_child(ns, new_src, "waits-first")
    print(
        f"2b. {out['waits']:,} waits registered before a worker starts on their jobs: "
        f"overhead beyond the handler's end p50 {out['overhead_p50']:.1f} ms, p95 "
        f"{out['overhead_p95']:.1f} ms; all done in {out['wall']:.2f} s (with the "
        "worker's start)",
        flush=True,
    )


def main() -> int:
    ns = parse_args()
    if ns.child == "worker":
        asyncio.run(child_worker(ns))
        return 0
    if ns.child:
        out = asyncio.run(child_main(ns))
        import soniq

        out["soniq"] = str(Path(soniq.__file__).resolve().parent.parent)
        print(RESULT + json.dumps(out), flush=True)
        return 0
    return parent_main(ns)


if __name__ == "__main__":
    sys.exit(main())
