"""Helpers for an application's tests: run queued jobs in-process, assert on the queue.

``await drain(app)`` runs every job that is runnable until none is left, in this
process, and reports how each attempt ended. ``assert_enqueued`` and friends check
what the code under test put on the queue. ``soniq_sync.testing`` has the same
helpers for blocking apps, and the pytest plugin (``soniq.testing.pytest_plugin``) gives
tests a fresh database to run them on.

They work on every storage backend. ``in_memory(app)`` points an app your code
imports at a fresh in-memory backend for one test, so tests need no database server.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from soniq.enqueue.naming import derive_task_name
from soniq.enqueue.plan import dump_args, normalise_args
from soniq.enqueue.task_ref import TaskRef
from soniq.errors import DRAIN_LIMIT, INVALID_ARGUMENT, INVALID_TARGET, SoniqError
from soniq.storage.local import MemoryBackend
from soniq.storage.store import Store
from soniq.testing.waiting import wait_until

if TYPE_CHECKING:
    from soniq.app import Soniq
    from soniq.app_base import AppBase
    from soniq.worker import Worker

__all__ = [
    "DEFAULT_MAX_ROUNDS",
    "DrainReport",
    "MemoryBackend",
    "assert_enqueued",
    "assert_not_enqueued",
    "drain",
    "enqueued_jobs",
    "in_memory",
    "make_app",
    "wait_until",
]

AppT = TypeVar("AppT", bound="AppBase")

logger = logging.getLogger("soniq.testing")

#: Rounds ``drain`` runs before giving up on a queue that never empties.
DEFAULT_MAX_ROUNDS = 100

#: How the shown list of enqueued jobs is cut in an assertion message.
_SHOWN_JOBS = 20


@dataclass(frozen=True)
class DrainReport:
    """What :func:`drain` ran: attempts by how they ended, and the rounds it took.

    A job retried twice and then done counts 2 in ``retried`` and 1 in ``done``.
    ``snoozed`` counts attempts that put their job back without spending an attempt.
    """

    rounds: int = 0
    done: int = 0
    retried: int = 0
    dead_lettered: int = 0
    snoozed: int = 0
    cancelled: int = 0

    @property
    def ran(self) -> int:
        """Attempts run, whatever their outcome."""
        return self.done + self.retried + self.dead_lettered + self.snoozed + self.cancelled

    def add(self, outcomes: Mapping[str, int]) -> DrainReport:
        """This report plus one more round whose attempts ended as ``outcomes``."""
        return DrainReport(
            rounds=self.rounds + 1,
            done=self.done + outcomes.get("done", 0),
            retried=self.retried + outcomes.get("retried", 0),
            dead_lettered=self.dead_lettered + outcomes.get("dead_lettered", 0),
            snoozed=self.snoozed + outcomes.get("snoozed", 0),
            cancelled=self.cancelled + outcomes.get("cancelled", 0),
        )


# --------------------------------------------------------------------------- backend


@contextlib.contextmanager
def in_memory(app: AppT) -> Iterator[AppT]:
    """Within the block, ``app`` keeps its jobs in a fresh in-memory backend.

    For tests of code that enqueues through an app it imports (async or blocking)::

        @pytest.fixture
        def jobs_app():
            with soniq.testing.in_memory(myproject.jobs.app) as app:
                yield app

    Each use starts empty. Afterwards the app is back on its own backend and
    settings; connections it had open stay open, untouched. This is
    ``app.using_backend("memory")``.
    """
    with app.using_backend("memory"):
        yield app


def make_app(**settings: Any) -> Soniq:
    """A new async app on a fresh in-memory backend: ``Soniq(backend="memory", ...)``.

    For unit tests that need no database server; ``settings`` are the keywords of
    ``Soniq(...)``.
    """
    from soniq.app import Soniq

    return Soniq(backend="memory", **settings)


# --------------------------------------------------------------------------- drain


async def drain(
    app: Soniq,
    *,
    skip_delays: bool = False,
    max_rounds: int = DEFAULT_MAX_ROUNDS,
    queues: list[str] | None = None,
) -> DrainReport:
    """Run the app's jobs in this process until no runnable job is left.

    Each round runs the jobs runnable when it starts (and whatever they make runnable
    at once, such as a retry without delay) on an in-process worker. With
    ``skip_delays`` every waiting job (a retry delay, ``schedule()``, a snooze) is made
    due before each round, so a failing job goes through all its attempts in one call.
    Raises ``SONIQ_DRAIN_LIMIT`` if jobs are still runnable after ``max_rounds``
    rounds (a job that snoozes or re-enqueues itself forever).
    """
    check_async_app(app, "drain")
    check_max_rounds(max_rounds)
    await app.ensure_initialized()
    return await drain_rounds(
        app.store,
        app.worker,
        skip_delays=skip_delays,
        max_rounds=max_rounds,
        queues=queues,
        concurrency=app.settings.concurrency,
    )


async def drain_rounds(
    store: Store,
    new_worker: Callable[[], Worker],
    *,
    skip_delays: bool,
    max_rounds: int,
    queues: list[str] | None,
    concurrency: int,
) -> DrainReport:
    """The rounds of :func:`drain` over a connected ``store``, each run by a new worker
    (``soniq_sync.testing.drain`` runs them on a blocking app's worker backend)."""
    report = DrainReport()
    while True:
        if skip_delays:
            await store.jobs.make_due(queues)
        runnable = await store.jobs.runnable(queues)
        waiting = sum(int(row["jobs"]) for row in runnable)
        if not waiting:
            return report
        if report.rounds >= max_rounds:
            raise drain_limit(max_rounds, runnable, report)
        worker = new_worker()
        # At most the jobs runnable now: a job that snoozes for 0 s would otherwise
        # keep one worker pass going forever, past max_rounds.
        await worker.run_once(queues, max_jobs=waiting, concurrency=concurrency)
        report = report.add(worker.outcomes)
        logger.debug(
            "drain round %d ran %d attempts",
            report.rounds,
            sum(worker.outcomes.values()),
            extra={"round": report.rounds, **dict(worker.outcomes)},
        )


def check_max_rounds(max_rounds: object) -> None:
    """Reject a ``max_rounds`` that is not an int >= 1."""
    if not isinstance(max_rounds, int) or isinstance(max_rounds, bool) or max_rounds < 1:
        raise SoniqError(INVALID_ARGUMENT, f"max_rounds must be an int >= 1, got {max_rounds!r}.")


def drain_limit(
    max_rounds: int, runnable: Sequence[Mapping[str, Any]], report: DrainReport
) -> SoniqError:
    """The error for a queue still not empty after ``max_rounds`` rounds."""
    left = ", ".join(f"{row['job_name']} ({row['jobs']})" for row in runnable)
    return SoniqError(
        DRAIN_LIMIT,
        f"Jobs were still runnable after {max_rounds} drain rounds: {left}. A job that "
        "snoozes or enqueues itself again every time never lets the queue empty; stop "
        "it doing so in tests, or pass a larger max_rounds= if the chain is just long.",
        max_rounds=max_rounds,
        runnable={str(row["job_name"]): int(row["jobs"]) for row in runnable},
        report=report,
    )


def check_async_app(app: object, helper: str) -> None:
    """Point a blocking app's caller to ``soniq_sync.testing``."""
    from soniq.app import Soniq

    if not isinstance(app, Soniq):
        raise SoniqError(
            INVALID_ARGUMENT,
            f"soniq.testing.{helper}() takes a soniq.Soniq app, got "
            f"{type(app).__module__}.{type(app).__name__}. For a soniq_sync.Soniq app "
            f"use soniq_sync.testing.{helper}().",
        )


# --------------------------------------------------------------------------- assertions


async def enqueued_jobs(
    app: Soniq, task: object = None, *, queue: str | None = None
) -> list[dict[str, Any]]:
    """Jobs waiting to run (due now or later), oldest first, as ``get_job`` dicts.

    ``task`` (a ``@app.job`` function, a task name or a ``TaskRef``) and ``queue``
    narrow the list.
    """
    check_async_app(app, "enqueued_jobs")
    name = None if task is None else task_name(app, task)
    return await app.store.jobs.enqueued(name, queue)


async def assert_enqueued(
    app: Soniq,
    task: object,
    args: Mapping[str, Any] | BaseModel | None = None,
    *,
    queue: str | None = None,
    count: int | None = None,
) -> list[dict[str, Any]]:
    """Fail unless ``task`` is waiting on the queue (with exactly ``args``, if given).

    ``count`` asks for exactly that many matching jobs; without it one or more will
    do. Returns the matching jobs. The AssertionError lists what was enqueued.
    """
    check_async_app(app, "assert_enqueued")
    name, expected = expectation(app, task, args, count)
    jobs = await app.store.jobs.enqueued(None, None)
    return check_enqueued(jobs, name, expected, queue, count)


async def assert_not_enqueued(
    app: Soniq,
    task: object,
    args: Mapping[str, Any] | BaseModel | None = None,
    *,
    queue: str | None = None,
) -> None:
    """Fail if ``task`` is waiting on the queue (with exactly ``args``, if given)."""
    check_async_app(app, "assert_not_enqueued")
    name, expected = expectation(app, task, args, None)
    jobs = await app.store.jobs.enqueued(None, None)
    check_enqueued(jobs, name, expected, queue, 0)


# The parts below are shared with soniq_sync.testing: no I/O.


def task_name(app: AppBase, task: object) -> str:
    """The task name of a ``@app.job`` function, a task-name string or a ``TaskRef``."""
    if isinstance(task, TaskRef):
        return task.name
    if isinstance(task, str):
        return task
    if callable(task):
        spec = app.registry.for_function(task)
        if spec is not None:
            return spec.name
        return str(getattr(task, "__soniq_task_name__", None) or derive_task_name(task))
    raise SoniqError(
        INVALID_TARGET,
        f"Pass a @app.job() function, a task-name string or a TaskRef, got {type(task).__name__}.",
    )


def expectation(
    app: AppBase, task: object, args: object, count: object
) -> tuple[str, dict[str, Any] | None]:
    """Check an assertion's arguments; return the task name and the args as stored."""
    name = task_name(app, task)
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 0):
        raise SoniqError(INVALID_ARGUMENT, f"count must be an int >= 0, got {count!r}.")
    if args is None:
        return name, None
    # The stored args went through JSON; compare with the same round trip.
    stored: dict[str, Any] = json.loads(dump_args(normalise_args(args, name), name))
    return name, stored


def check_enqueued(
    jobs: Sequence[Mapping[str, Any]],
    name: str,
    expected: Mapping[str, Any] | None,
    queue: str | None,
    count: int | None,
) -> list[dict[str, Any]]:
    """Raise AssertionError unless the matching jobs number ``count`` (None: 1 or more)."""
    matching = [
        dict(job)
        for job in jobs
        if job["job_name"] == name
        and (queue is None or job["queue"] == queue)
        and (expected is None or job["args"] == expected)
    ]
    if count is None and matching:
        return matching
    if count is not None and len(matching) == count:
        return matching
    wanted = _describe(name, expected, queue)
    if count is None:
        problem = f"Expected {wanted} to be enqueued, but it was not."
    elif count == 0:
        problem = f"Expected {wanted} not to be enqueued, but found {len(matching)}."
    else:
        problem = f"Expected {count} of {wanted} enqueued, found {len(matching)}."
    raise AssertionError(f"{problem}\n{_listing(jobs)}")


def _describe(name: str, expected: Mapping[str, Any] | None, queue: str | None) -> str:
    text = repr(name)
    if expected is not None:
        text += f" with args {_json(expected)}"
    if queue is not None:
        text += f" on queue {queue!r}"
    return text


def _listing(jobs: Sequence[Mapping[str, Any]]) -> str:
    if not jobs:
        return "Nothing is enqueued."
    lines = [f"Enqueued ({len(jobs)}):"]
    lines += [
        f"  {job['job_name']} args={_json(job['args'])} queue={job['queue']!r}"
        for job in jobs[:_SHOWN_JOBS]
    ]
    if len(jobs) > _SHOWN_JOBS:
        lines.append(f"  ... and {len(jobs) - _SHOWN_JOBS} more")
    return "\n".join(lines)


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=str)
