"""Task names at enqueue, on every backend: a name that no local registration serves
must match SONIQ_TASK_NAME_PATTERN in every validation mode, or nothing is written."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import pytest

from soniq import Soniq, SoniqError
from soniq.enqueue.task_ref import TaskRef
from soniq.errors import INVALID_TASK_NAME
from soniq.recurring.periodic import SchedulerProcess
from tests.behaviour.conftest import POSTGRES, SQLITE

MODES = ["strict", "warn", "none"]
BAD_NAMES = ["Bad Name", ".leading", "trailing.", "double..dot", "Has.Caps", ""]

Call = Callable[[Soniq, str], Awaitable[object]]

ENTRY_POINTS: dict[str, Call] = {
    "enqueue(name)": lambda app, name: app.enqueue(name, args={}),
    "enqueue(TaskRef)": lambda app, name: app.enqueue(TaskRef(name), args={}),
    "enqueue_many(name)": lambda app, name: app.enqueue_many(name, [{}, {}]),
    "enqueue_many(TaskRef)": lambda app, name: app.enqueue_many(TaskRef(name), [{}]),
    "schedule(name)": lambda app, name: app.schedule(name, 60, args={}),
    "scheduler.add(name)": lambda app, name: app.scheduler.add(name, every=60),
    "scheduler.add(name=)": lambda app, name: app.scheduler.add(name=name, every=60),
}


async def nothing_written(app: Soniq) -> bool:
    return await app.list_jobs() == [] and await app.scheduler.list() == []


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
@pytest.mark.parametrize("mode", MODES)
async def test_a_malformed_unregistered_name_is_refused_in_every_mode(
    make_app: Callable[..., Soniq], mode: str, entry: str
) -> None:
    app = make_app(enqueue_validation=mode)

    @app.job(name="some.other.task")
    def other() -> None: ...

    for name in BAD_NAMES:
        with pytest.raises(SoniqError) as info:
            await ENTRY_POINTS[entry](app, name)
        assert info.value.code == INVALID_TASK_NAME, (name, info.value)
        assert info.value.details["task_name"] == name
        assert "SONIQ_TASK_NAME_PATTERN" in info.value.message or name == ""
    assert await nothing_written(app)


@pytest.mark.parametrize("mode", MODES)
async def test_a_name_a_local_registration_serves_is_taken_as_it_is(
    make_app: Callable[..., Soniq], mode: str
) -> None:
    app = make_app(enqueue_validation=mode)

    @app.job()  # a module-derived name, which skips the pattern: it has "<locals>"
    def handler() -> str:
        return "ran"

    derived = app.registry.names()[0]
    assert "<locals>" in derived
    by_name = await app.enqueue(derived, args={})
    by_ref = await app.enqueue(TaskRef(derived), args={})
    many = await app.enqueue_many(derived, [{}, {}])
    # The same shape of name with no registration behind it is refused.
    with pytest.raises(SoniqError) as info:
        await app.enqueue(derived.replace("handler", "missing"), args={})
    assert info.value.code == INVALID_TASK_NAME

    assert await app.run_worker(run_once=True) is True
    for job_id in (by_name, by_ref, *many):
        assert await app.get_result(job_id) == "ran"


async def test_the_pattern_is_the_apps_setting(make_app: Callable[..., Soniq]) -> None:
    app = make_app(enqueue_validation="none", task_name_pattern=r"^svc\.[a-z]+$")
    job_id = await app.enqueue("svc.mail", args={})
    with pytest.raises(SoniqError) as info:
        await app.enqueue("billing.send", args={})  # fine by the default pattern
    assert info.value.code == INVALID_TASK_NAME
    assert info.value.details["pattern"] == r"^svc\.[a-z]+$"
    assert [j["id"] for j in await app.list_jobs()] == [job_id]


@pytest.mark.parametrize("backend", [POSTGRES, SQLITE])
async def test_a_stored_schedule_fires_under_its_module_derived_name(
    make_app: Callable[..., Soniq],
) -> None:
    """The scheduler fires a schedule by the name it was stored under, which may be a
    module-derived one it has no registration for; new names are still checked."""
    owner = make_app()

    @owner.job()
    def report() -> None: ...

    (derived,) = owner.registry.names()
    await owner.scheduler.add(report, every=1)

    # Like `soniq scheduler` without the owner's jobs module: enqueues by name.
    scheduler_app = make_app(enqueue_validation="none")
    with pytest.raises(SoniqError) as info:
        await scheduler_app.scheduler.add("Bad Name", every=1)
    assert info.value.code == INVALID_TASK_NAME
    proc = SchedulerProcess(scheduler_app)
    try:
        await fire(proc, derived)
    finally:
        proc.stop()
        await proc.run(handle_signals=False)
    (job,) = await scheduler_app.list_jobs()
    assert job["job_name"] == derived
    assert [s["name"] for s in await scheduler_app.scheduler.list()] == [derived]


async def fire(proc: SchedulerProcess, name: str, deadline: float = 10.0) -> None:
    """Step the scheduler until it has enqueued a job of ``name`` (it fires once due)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        assert await proc.step() is True
        if await proc.app.list_jobs(job_name=name):
            return
    raise AssertionError(f"the schedule {name!r} did not fire within {deadline}s")
