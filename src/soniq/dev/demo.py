"""What ``soniq demo`` runs: a few example jobs, a worker and a scheduler, in one process.

The jobs show the main behaviours in a few seconds: plain jobs, one that fails twice
and then succeeds, one that fails until it is dead-lettered, one scheduled ahead, and
a periodic one fired by the scheduler. :func:`run_demo` reports progress through a
callback and returns a :class:`DemoSummary`; printing is the command's business.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from soniq.app import Soniq
from soniq.recurring.periodic import SchedulerProcess
from soniq.types import JobContext

#: The demo's queue; its worker serves only this one.
QUEUE = "soniq-demo"

GREETINGS = ("Ada", "Grace", "Edsger", "Barbara", "Ken", "Margaret", "Dennis", "Frances")
#: How many quick ``demo.greet`` jobs are enqueued in one batch (for the throughput).
BURST = 200
#: How many one-off jobs :func:`enqueue_examples` writes.
ONE_OFF_JOBS = BURST + 3
#: How many runs of the periodic job the demo waits for.
PERIODIC_RUNS = 3
PERIODIC_EVERY = 1.5  # seconds
SCHEDULED_AHEAD = 3.0  # seconds
#: Jobs the demo's worker runs at once.
CONCURRENCY = 4


@dataclass(frozen=True)
class DemoProgress:
    """The demo queue's state at one moment."""

    seconds: float
    queued: int
    processing: int
    done: int
    dead_lettered: int
    periodic_runs: int

    @property
    def finished(self) -> bool:
        """Every one-off job has ended, and the periodic job ran often enough."""
        one_offs_ended = self.done - self.periodic_runs + self.dead_lettered
        return one_offs_ended >= ONE_OFF_JOBS and self.periodic_runs >= PERIODIC_RUNS


@dataclass(frozen=True)
class DemoSummary:
    """How the demo went, read from the database at the end."""

    completed: bool  # False if stopped (Ctrl-C) or out of time before the jobs ended
    seconds: float
    done: int
    retried: int  # done jobs that needed more than one attempt
    dead_lettered: int
    periodic_runs: int
    burst_jobs: int  # demo.greet jobs done
    burst_seconds: float  # from the first one's start to the last one's finish

    @property
    def throughput(self) -> float:
        """``demo.greet`` jobs done per second, from the first start to the last finish."""
        return self.burst_jobs / self.burst_seconds if self.burst_seconds > 0 else 0.0


def build_demo_app(database_url: str) -> Soniq:
    """A Soniq with the demo's jobs (all named ``demo.*``, all on :data:`QUEUE`)."""
    # Short waits: retries come half a second apart, and an idle worker looks for
    # newly due jobs every half second instead of every five.
    app = Soniq(database_url=database_url, poll_interval=0.5)

    @app.job(name="demo.greet", queue=QUEUE)
    async def greet(name: str) -> str:
        return f"Hello, {name}!"

    @app.job(name="demo.flaky", queue=QUEUE, retries=2, retry_delay=0.5)
    async def flaky(ctx: JobContext) -> str:
        if ctx.attempt < 3:
            raise RuntimeError(f"failed on attempt {ctx.attempt}; Soniq will retry it")
        return f"succeeded on attempt {ctx.attempt}"

    @app.job(name="demo.doomed", queue=QUEUE, retries=1, retry_delay=0.5)
    async def doomed() -> None:
        raise RuntimeError("this job always fails; once out of retries it is dead-lettered")

    @app.job(name="demo.reminder", queue=QUEUE)
    async def reminder(text: str) -> str:
        return text

    @app.periodic(every=PERIODIC_EVERY, name="demo.tick", queue=QUEUE)
    async def tick() -> None:
        return None

    return app


async def enqueue_examples(app: Soniq) -> None:
    """Write the demo's one-off jobs (:data:`ONE_OFF_JOBS` of them)."""
    names = [GREETINGS[i % len(GREETINGS)] for i in range(BURST)]
    await app.enqueue_many("demo.greet", [{"name": name} for name in names])
    await app.enqueue("demo.flaky")
    await app.enqueue("demo.doomed")
    await app.schedule("demo.reminder", SCHEDULED_AHEAD, args={"text": "scheduled 3 seconds ahead"})


async def progress(app: Soniq, started: float) -> DemoProgress:
    """Read the demo queue's counts now."""
    stats = {row["queue"]: row for row in await app.get_queue_stats_by_queue()}.get(QUEUE, {})
    ticks = await app.list_jobs(queue=QUEUE, job_name="demo.tick", status="done", limit=1000)
    return DemoProgress(
        seconds=time.monotonic() - started,
        queued=int(stats.get("queued", 0)),
        processing=int(stats.get("processing", 0)),
        done=int(stats.get("done", 0)),
        dead_lettered=int(stats.get("dead_letter", 0)),
        periodic_runs=len(ticks),
    )


async def run_demo(
    app: Soniq,
    on_progress: Callable[[DemoProgress], None],
    *,
    interval: float = 0.25,
    time_limit: float = 60.0,
) -> DemoSummary:
    """Enqueue the examples, run a worker and a scheduler until they are all handled.

    ``app`` comes from :func:`build_demo_app` on a set-up database that nobody else
    uses. ``on_progress`` is called every ``interval`` seconds. Stops early, with
    ``completed=False``, on SIGINT/SIGTERM (the worker's own handling) or after
    ``time_limit`` seconds.
    """
    started = time.monotonic()
    await enqueue_examples(app)
    worker = app.worker()
    scheduler = SchedulerProcess(app, app.periodic_jobs.values())
    worker_ended = anyio.Event()
    completed = False

    async def run_worker() -> None:
        try:
            await worker.run(concurrency=CONCURRENCY, queues=[QUEUE])
        finally:
            worker_ended.set()

    async def run_scheduler() -> None:
        await scheduler.run(handle_signals=False)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(run_worker)
        tasks.start_soon(run_scheduler)
        try:
            while not worker_ended.is_set() and time.monotonic() - started < time_limit:
                now = await progress(app, started)
                on_progress(now)
                if now.finished:
                    completed = True
                    break
                with anyio.move_on_after(interval):
                    await worker_ended.wait()
        finally:
            scheduler.stop()
            worker.stop()

    final = await progress(app, started)
    done = await app.list_jobs(queue=QUEUE, status="done", limit=BURST + 1000)
    burst = [job for job in done if job["job_name"] == "demo.greet"]
    burst_seconds = (
        (max(j["finished_at"] for j in burst) - min(j["started_at"] for j in burst)).total_seconds()
        if burst
        else 0.0
    )
    return DemoSummary(
        completed=completed,
        seconds=final.seconds,
        done=final.done,
        retried=sum(1 for job in done if job["attempts"] > 1),
        dead_lettered=final.dead_lettered,
        periodic_runs=final.periodic_runs,
        burst_jobs=len(burst),
        burst_seconds=burst_seconds,
    )
