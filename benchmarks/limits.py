"""What concurrency and rate limits per key cost, against the tree before them.

Run it from the tree with limits, naming the baseline tree's ``src``::

    python benchmarks/limits.py --base-src /work/wt/base/src
    python benchmarks/limits.py --jobs 5000 --rounds 1     # smoke run, about a minute

Two trees cannot be imported in one process, so every measurement is one subprocess
of this script (``--child``, which prints its figures as JSON) with ``PYTHONPATH`` set
to one tree's ``src``. Each child creates a scratch database ``soniq_bench_<random>``,
runs that tree's ``app.setup()`` (all its migrations), measures, and drops it. The
parent runs the rounds interleaved (base, new, base, new, ...; the pair's order flips
every round) and prints medians. Measurements (the issue's performance gates):

1. **Unused cost**, migration 0010 applied and no limit used: (a) a drain of ``--jobs``
   no-op jobs by ``run_worker(run_once=True, concurrency=64)`` in the child; (b)
   ``enqueue_many`` of 1,000 and 10,000 rows (median of several calls per child).
   New against base; gates 97% and 95%.
2. **100 keys**, ``Concurrency(8, key="{k}")``, every job limited, concurrency 64:
   the drain rate against the baseline's drain of the same number of unlimited jobs
   (row 1a's base rounds); gate 25%.
3. **10% limited**: one job in ten is of that limited task, the rest unlimited, in the
   same queue; against the same baseline; gate 80%.
4. **One key at limit 1**, handlers ``await asyncio.sleep(0.001)``: jobs/s, absolute;
   gate 500 jobs/s.

A drain's rate is its jobs divided by the span from the first handler's start to the
last handler's end (the worker's start-up and shutdown are outside it); the rate over
the whole ``run_worker`` call is printed beside it. Filling the queue (then ``ANALYZE``
and ``CHECKPOINT``) is not timed. The script prints figures, never fails on a slow
result, and prints the load average at the start and the end: the box is shared.
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

DEFAULT_URL: Final = "postgresql://postgres@127.0.0.1:5432/postgres"
HERE: Final = Path(__file__).resolve().parent
NEW_SRC: Final = HERE.parent / "src"
BASE_SRC: Final = Path(os.environ.get("SONIQ_BENCH_BASE_SRC", "/work/wt/base/src"))
RESULT: Final = "RESULT "  # the child's line of JSON starts with this
ENQUEUE_CALLS: Final = {1_000: 15, 10_000: 5}  # timed calls per child, by batch size
CHILD_TIMEOUT: Final = 600.0


# --------------------------------------------------------------------------- options


def positive(text: str) -> int:
    value = int(text.replace("_", ""))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("SONIQ_DATABASE_URL") or DEFAULT_URL,
        help="a server on which the script may create and drop databases (default: "
        "$SONIQ_DATABASE_URL, else %(default)s)",
    )
    parser.add_argument(
        "--base-src",
        type=Path,
        default=BASE_SRC,
        help="the baseline tree's src directory (default: $SONIQ_BENCH_BASE_SRC, else %(default)s)",
    )
    parser.add_argument(
        "--new-src",
        type=Path,
        default=NEW_SRC,
        help="the tree with limits (default: this script's tree, %(default)s)",
    )
    parser.add_argument("--jobs", type=positive, default=20_000, help="jobs per drain round")
    parser.add_argument(
        "--serial-jobs", type=positive, default=2_000, help="jobs per round of measurement 4"
    )
    parser.add_argument("--rounds", type=positive, default=5, help="rounds; medians are printed")
    parser.add_argument("--concurrency", type=positive, default=64, help="worker concurrency")
    parser.add_argument("--keys", type=positive, default=100, help="limit keys in measurement 2")
    parser.add_argument(
        "--key-limit", type=positive, default=8, help="Concurrency(N) per key in 2 and 3"
    )
    parser.add_argument(
        "--limited-share",
        type=float,
        default=0.10,
        help="the share of limited jobs in measurement 3 (default %(default)s)",
    )
    parser.add_argument(
        "--sizes",
        default="1000,10000",
        help="enqueue_many batch sizes in measurement 1b (default %(default)s)",
    )
    parser.add_argument(
        "--only",
        default="1a,1b,2,3,4",
        help="the measurements to run, comma-separated (default %(default)s)",
    )
    parser.add_argument(
        "--once",
        default="plain,keys,mixed",
        help="the drains run by run_worker(run_once=True); the others by a long-running "
        "worker stopped when every job is done (default %(default)s: run_once leaves "
        "early when a claim finds every limited key at its limit)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)  # plain|keys|mixed|serial|enqueue
    parser.add_argument("--keep-order", action="store_true", help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    ns.sizes = [positive(s) for s in ns.sizes.split(",") if s.strip()]
    ns.only = {s.strip() for s in ns.only.split(",") if s.strip()}
    ns.once = {s.strip() for s in ns.once.split(",") if s.strip()}
    return ns


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


# --------------------------------------------------------------------------- the child
#
# Everything below up to the parent runs with one tree's soniq on sys.path.


class Stamps:
    """The first handler start, the last handler end, and how many ended."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.first: float | None = None
        self.last = 0.0
        self.count = 0
        self.all_ended = asyncio.Event()

    def start(self) -> None:
        if self.first is None:
            self.first = time.perf_counter()

    def end(self) -> None:
        self.last = time.perf_counter()
        self.count += 1
        if self.count >= self.expected:
            self.all_ended.set()


async def child_drain(ns: argparse.Namespace, url: str) -> dict[str, Any]:
    import psycopg

    from soniq import Soniq

    scenario = ns.child
    n = ns.serial_jobs if scenario == "serial" else ns.jobs
    stamps = Stamps(n)
    app = Soniq(database_url=url)

    @app.job(name="bench.noop")
    async def noop(x: int) -> None:
        stamps.start()
        stamps.end()

    fill: Callable[[], Any]
    if scenario == "plain":

        async def fill() -> None:
            await app.enqueue_many(noop, [{"x": i} for i in range(n)])

    else:
        from soniq import Concurrency  # only the tree with limits has it

        @app.job(name="bench.limited", concurrency=Concurrency(ns.key_limit, key="{k}"))
        async def limited(k: int, x: int) -> None:
            stamps.start()
            stamps.end()

        @app.job(name="bench.serial", concurrency=Concurrency(1))
        async def serial(x: int) -> None:
            stamps.start()
            await asyncio.sleep(0.001)
            stamps.end()

        if scenario == "keys":

            async def fill() -> None:
                await app.enqueue_many(limited, [{"k": i % ns.keys, "x": i} for i in range(n)])

        elif scenario == "mixed":
            # Chunks of 1,000 with the limited jobs spread through them, so that both
            # kinds are due from the start to the end of the round.
            async def fill() -> None:
                chunk = 1_000
                per_chunk = round(chunk * ns.limited_share)
                for start in range(0, n, chunk):
                    size = min(chunk, n - start)
                    k = min(per_chunk, size)
                    await app.enqueue_many(noop, [{"x": i} for i in range(start, start + size - k)])
                    if k:
                        await app.enqueue_many(
                            limited,
                            [
                                {"k": i % ns.keys, "x": i}
                                for i in range(start + size - k, start + size)
                            ],
                        )

        elif scenario == "serial":

            async def fill() -> None:
                await app.enqueue_many(serial, [{"x": i} for i in range(n)])

        else:
            raise SystemExit(f"unknown scenario {scenario!r}")

    await app.setup()
    await app.ensure_initialized()
    await fill()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT count(*) FILTER (WHERE limit_key IS NOT NULL) FROM soniq_jobs"
            if scenario != "plain"
            else "SELECT 0"
        )
        row = await cur.fetchone()
        limited_rows = int(row[0]) if row else 0
        await conn.execute("ANALYZE soniq_jobs")
        await conn.execute("CHECKPOINT")  # so no checkpoint is due mid-round
    gc.collect()
    worker = app.worker()
    once = scenario in ns.once
    done_sql = "SELECT count(*) FROM soniq_jobs WHERE status = 'done'"
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:

        async def count_done() -> int:
            cur = await conn.execute(done_sql)
            row = await cur.fetchone()
            return int(row[0]) if row else 0

        started = time.perf_counter()
        run = asyncio.ensure_future(worker.run(concurrency=ns.concurrency, run_once=once))
        if not once:
            # A long-running worker: stopped once every job is done (acknowledged).
            ended = asyncio.ensure_future(stamps.all_ended.wait())
            await asyncio.wait(
                [run, ended], timeout=CHILD_TIMEOUT / 2, return_when="FIRST_COMPLETED"
            )
            ended.cancel()
            for _ in range(int(CHILD_TIMEOUT / 0.01)):  # the acknowledgements commit
                if run.done() or await count_done() >= n:
                    break
                await asyncio.sleep(0.01)
            worker.stop()
        await run
        returned = time.perf_counter()
        done = await count_done()
    await app.close()
    first = stamps.first if stamps.first is not None else returned
    return {
        "jobs": n,
        "done": done,
        "ended": stamps.count,
        "limited_rows": limited_rows,
        "span": stamps.last - first,
        "wall": returned - started,
        "startup": first - started,
        "once": once,
    }


async def child_enqueue(ns: argparse.Namespace, url: str) -> dict[str, Any]:
    import psycopg

    from soniq import Soniq

    app = Soniq(database_url=url)

    @app.job(name="bench.noop")
    async def noop(x: int) -> None:
        return None

    await app.setup()
    await app.ensure_initialized()
    figures: dict[str, float] = {}
    best: dict[str, float] = {}
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        # As in enqueue.py: the table is truncated between calls; no autovacuum mid-call.
        await conn.execute("ALTER TABLE soniq_jobs SET (autovacuum_enabled = false)")
        for size in ns.sizes:
            items = [{"x": i} for i in range(size)]
            calls = ENQUEUE_CALLS.get(size, 5)
            seconds: list[float] = []
            for i in range(calls + 1):  # the first call warms up: pool, statements
                await conn.execute("TRUNCATE soniq_jobs")
                gc.collect()
                t0 = time.perf_counter()
                await app.enqueue_many(noop, items)
                if i:
                    seconds.append(time.perf_counter() - t0)
            figures[str(size)] = statistics.median(seconds)
            best[str(size)] = min(seconds)
    await app.close()
    return {"seconds": figures, "best": best}


async def child_main(ns: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    from support import Scratch

    scratch = Scratch(ns.database_url)
    url = await scratch.create()
    try:
        if ns.child == "enqueue":
            out = await child_enqueue(ns, url)
        else:
            out = await child_drain(ns, url)
    finally:
        await scratch.drop_all()
    return out


# --------------------------------------------------------------------------- the parent


@dataclass
class Series:
    """One case's figures, a value per round (jobs/s, higher is better)."""

    key: str
    label: str
    values: list[float] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)  # drains: rate over run_worker()
    bests: list[float] = field(default_factory=list)  # enqueue: the fastest call's rate
    notes: list[str] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def best(self) -> float:
        return max(self.bests or self.values) if self.values else float("nan")


def run_child(ns: argparse.Namespace, src: Path, scenario: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SONIQ_")}
    env["PYTHONPATH"] = str(src)
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        scenario,
        "--database-url",
        ns.database_url,
        "--jobs",
        str(ns.jobs),
        "--serial-jobs",
        str(ns.serial_jobs),
        "--concurrency",
        str(ns.concurrency),
        "--keys",
        str(ns.keys),
        "--key-limit",
        str(ns.key_limit),
        "--limited-share",
        str(ns.limited_share),
        "--sizes",
        ",".join(str(s) for s in ns.sizes),
        "--once",
        ",".join(sorted(ns.once)) or "none",
    ]
    proc = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT, check=False
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"child {scenario} ({src}) exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    out: dict[str, Any] = json.loads(lines[-1][len(RESULT) :])
    if Path(out["soniq"]) != src.resolve():
        raise RuntimeError(f"child {scenario} imported soniq from {out['soniq']}, not {src}")
    return out


def record_drain(series: Series, out: dict[str, Any]) -> str:
    rate = out["jobs"] / out["span"]
    series.values.append(rate)
    series.walls.append(out["jobs"] / out["wall"])
    note = ""
    if out["done"] != out["jobs"]:
        note = f"  ONLY {out['done']:,} of {out['jobs']:,} DONE when run_worker returned"
        series.notes.append(note.strip())
    return (
        f"{rate:>9,.0f} jobs/s ({out['span']:.2f} s first start..last end; "
        f"run_worker {out['wall']:.2f} s, first start after {out['startup']:.2f} s){note}"
    )


def pct(a: float, b: float) -> str:
    return f"{a / b:7.1%}" if b else "    n/a"


def paired(new: Series, base: Series) -> float:
    """The median of the ratios new/base of the same round."""
    ratios = [a / b for a, b in zip(new.values, base.values, strict=False) if b]
    return statistics.median(ratios) if ratios else float("nan")


def parent_main(ns: argparse.Namespace) -> int:
    started = time.perf_counter()
    base_src, new_src = ns.base_src.resolve(), ns.new_src.resolve()
    for src in (base_src, new_src):
        if not (src / "soniq" / "__init__.py").is_file():
            print(f"{src} is not a tree's src directory (no soniq/__init__.py)", file=sys.stderr)
            return 2
    print(f"load average at the start: {loadavg()}")
    print(f"base: {base_src}\nnew:  {new_src}")
    print(
        f"{ns.rounds} round(s); drains of {ns.jobs:,} jobs (measurement 4: "
        f"{ns.serial_jobs:,}), concurrency {ns.concurrency}; a fresh database per child",
        flush=True,
    )
    want = ns.only
    drain_base = Series("1a", f"drain {ns.jobs:,} no-op jobs, base")
    drain_new = Series("1a", f"drain {ns.jobs:,} no-op jobs, new")
    keys = Series("2", f"{ns.keys} keys x Concurrency({ns.key_limit}), all limited")
    mixed = Series("3", f"{ns.limited_share:.0%} limited, the rest unlimited")
    serial = Series("4", "one key, Concurrency(1), 1 ms jobs")
    enq_base = {s: Series("1b", f"enqueue_many {s:,} rows, base") for s in ns.sizes}
    enq_new = {s: Series("1b", f"enqueue_many {s:,} rows, new") for s in ns.sizes}
    need_base_drain = bool(want & {"1a", "2", "3"})

    for r in range(1, ns.rounds + 1):
        flip = r % 2 == 0 and not ns.keep_order  # new first on even rounds
        print(f"round {r} (load {loadavg()})", flush=True)
        pair = [("base", base_src), ("new", new_src)]
        if flip:
            pair.reverse()
        drains: list[tuple[str, Path, str, Series]] = []
        if need_base_drain:
            drains.append(("base", base_src, "plain", drain_base))
        for key, scenario, series in (
            ("1a", "plain", drain_new),
            ("2", "keys", keys),
            ("3", "mixed", mixed),
            ("4", "serial", serial),
        ):
            if key in want:
                drains.append(("new", new_src, scenario, series))
        if flip:
            drains.reverse()
        for name, src, scenario, series in drains:
            out = run_child(ns, src, scenario)
            print(f"  {series.key:<3}{name:<5}{scenario:<7}{record_drain(series, out)}", flush=True)
        if "1b" in want:
            for name, src in pair:
                out = run_child(ns, src, "enqueue")
                target = enq_base if name == "base" else enq_new
                parts = []
                for size in ns.sizes:
                    rate = size / out["seconds"][str(size)]
                    target[size].values.append(rate)
                    target[size].bests.append(size / out["best"][str(size)])
                    parts.append(f"{size:,} rows {rate:,.0f} jobs/s")
                print(f"  1b {name:<5}enqueue_many: {'; '.join(parts)}", flush=True)

    print()
    print(
        f"Medians of {ns.rounds} round(s). 'paired': the median of the same round's ratios; "
        "'best': the fastest\nround (enqueue: the fastest call) of each, the figure least "
        "moved by other work on the box.\nThe verdict reads the ratio of the medians."
    )
    print(
        f"{'#':<3} {'case':<44} {'base jobs/s':>12} {'new jobs/s':>11} {'ratio':>7} "
        f"{'paired':>7} {'best':>7} {'gate':>8}  verdict"
    )
    print("-" * 114)

    def row(
        key: str, label: str, base: Series | None, new: Series, gate: float, absolute: bool = False
    ) -> None:
        if not new.values:
            return
        if absolute or base is None:
            figure = new.median
            verdict = "pass" if figure >= gate else "FAIL"
            print(
                f"{key:<3} {label:<44} {'':>12} {new.median:>11,.0f} {'':>7} {'':>7} "
                f"{new.best:>7,.0f} {f'{gate:,.0f}/s':>8}  {verdict}"
            )
        else:
            ratio = new.median / base.median
            verdict = "pass" if ratio >= gate else "FAIL"
            print(
                f"{key:<3} {label:<44} {base.median:>12,.0f} {new.median:>11,.0f} "
                f"{pct(new.median, base.median)} {paired(new, base):7.1%} "
                f"{pct(new.best, base.best)} {f'>= {gate:.0%}':>8}  {verdict}"
            )
        for note in new.notes:
            print(f"      ({note})")

    if "1a" in want:
        row("1a", f"drain {ns.jobs:,} no-op jobs, no limit used", drain_base, drain_new, 0.97)
    if "1b" in want:
        for size in ns.sizes:
            row(
                "1b",
                f"enqueue_many {size:,} rows, no limit used",
                enq_base[size],
                enq_new[size],
                0.95,
            )
    if "2" in want:
        row(
            "2",
            f"{ns.keys} keys x Concurrency({ns.key_limit}), vs base unlimited",
            drain_base,
            keys,
            0.25,
        )
    if "3" in want:
        row("3", f"{ns.limited_share:.0%} limited, vs base all unlimited", drain_base, mixed, 0.80)
    if "4" in want:
        row("4", "one key at limit 1, 1 ms jobs (absolute)", None, serial, 500, absolute=True)
    walls = [s for s in (drain_base, drain_new, keys, mixed, serial) if s.walls]
    if walls:
        print(
            "\nThe same drains timed over the whole run_worker() call (start-up and shutdown in):"
        )
        for s in walls:
            print(f"    {s.key:<3} {s.label:<48} {statistics.median(s.walls):>9,.0f} jobs/s")
    print(f"\ntotal {time.perf_counter() - started:.1f} s; load average at the end: {loadavg()}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ns = parse_args(argv)
    if ns.child:
        out = asyncio.run(child_main(ns))
        import soniq

        out["soniq"] = str(Path(soniq.__file__).resolve().parent.parent)
        print(RESULT + json.dumps(out), flush=True)
        return 0
    return parent_main(ns)


if __name__ == "__main__":
    sys.exit(main())
