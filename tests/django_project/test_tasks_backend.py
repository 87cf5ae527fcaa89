"""The tasks backend: @task functions stored as Soniq jobs and run by `soniq worker`."""

from __future__ import annotations

import copy
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from django.db import transaction

from soniq.errors import (
    ARGS_NOT_SERIALIZABLE,
    INVALID_JOB_ID,
    INVALID_JOB_OPTION,
    JOB_NOT_FOUND,
    SoniqError,
)
from soniq_sync.django._compat import InvalidTask, TaskResultDoesNotExist, TaskResultStatus
from soniq_sync.django.backend import SoniqBackend, to_django_priority, to_soniq_priority
from tests.django_project.conftest import Outside, Worker
from tests.django_project.testapp import tasks
from tests.django_project.testapp.models import Order, SignalRecord
from tests.helpers import wait_for_sync

SONIQ_BACKEND = "soniq_sync.django.backend.SoniqBackend"


class Boom(Exception):
    pass


def finished(result: Any, worker: Worker) -> Any:
    """Wait until the worker has finished ``result``'s task; return it refreshed."""

    def done() -> bool:
        result.refresh()
        return bool(result.is_finished)

    try:
        wait_for_sync(done, timeout=30, message=f"task {result.task.name} to finish")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{worker.describe()}") from None
    return result


def test_task_enqueued_in_atomic_runs_after_commit(outside: Outside, worker: Worker) -> None:
    with transaction.atomic():
        result = tasks.add.enqueue(2, 3, scale=10)
        assert result.status == TaskResultStatus.READY
        assert outside.job(result.id) is None  # not committed yet
    row = outside.job(result.id)
    assert row is not None
    assert row[0] == "tests.django_project.testapp.tasks.add"
    assert row[1] == {"args": [2, 3], "kwargs": {"scale": 10}}

    finished(result, worker)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 50
    assert result.args == [2, 3] and result.kwargs == {"scale": 10}
    assert result.attempts == 1
    again = tasks.add.get_result(result.id)
    assert again.return_value == 50 and again.task.func is tasks.add.func


def test_task_enqueue_rolled_back_leaves_nothing(outside: Outside) -> None:
    with pytest.raises(Boom), transaction.atomic():
        result = tasks.add.enqueue(1, 1)
        raise Boom
    assert outside.job(result.id) is None
    with pytest.raises(TaskResultDoesNotExist) as err:
        tasks.add.get_result(result.id)
    assert isinstance(err.value, SoniqError) and err.value.code == JOB_NOT_FOUND


def test_task_with_context_async_task_and_orm_task(outside: Outside, worker: Worker) -> None:
    key = uuid.uuid4().hex
    context = finished(tasks.whoami.enqueue("hi"), worker)
    assert context.return_value == {"label": "hi", "attempt": 1, "id": context.id}
    assert finished(tasks.async_echo.enqueue({"x": [1]}), worker).return_value == {"x": [1]}
    created = finished(tasks.create_order.enqueue(key), worker)
    assert created.status == TaskResultStatus.SUCCESSFUL
    assert outside.order_exists(key)
    assert created.task.queue_name == "other" and created.task.priority == 50


def test_failing_task_reports_failed_with_the_error(outside: Outside, worker: Worker) -> None:
    result = finished(tasks.fail.enqueue("it broke"), worker)
    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class is ValueError
    assert "it broke" in error.traceback
    with pytest.raises(ValueError):
        result.return_value  # noqa: B018 - the property raises for a failed task
    # The dead letter keeps when its attempt started.
    assert result.started_at is not None and result.last_attempted_at == result.started_at
    assert result.enqueued_at <= result.started_at <= result.finished_at


def test_a_failed_result_has_the_start_of_its_last_attempt(
    outside: Outside, worker: Worker
) -> None:
    result = finished(tasks.flaky.enqueue(failures=2), worker)
    assert result.status == TaskResultStatus.FAILED and result.attempts == 2
    first, second = (r for r in records(result.id) if r.signal == "started")
    assert first.started_at < second.started_at
    assert result.started_at == second.started_at == result.last_attempted_at
    assert second.started_at <= result.finished_at


# -- the result enqueue returns is the stored one ----------------------------------


def test_enqueue_returns_the_result_get_result_reads(outside: Outside, worker: Worker) -> None:
    parked = {"queue_name": "parked"}  # no worker takes these: they stay as enqueued
    with transaction.atomic():
        Order.objects.create(ref=uuid.uuid4().hex)  # the view's own write comes first
        inside = tasks.add.using(**parked).enqueue(2, 2)
    assert tasks.add.get_result(inside.id) == inside
    fresh = copy.copy(inside)
    inside.refresh()
    assert inside == fresh

    plain = tasks.async_echo.using(**parked).enqueue({1: ("one", b"bytes")})
    assert plain.args == [{"1": ["one", "bytes"]}]  # as JSON stores it
    assert tasks.async_echo.get_result(plain.id) == plain
    tomorrow = datetime.now(timezone.utc) + timedelta(days=1)
    deferred = tasks.add.using(run_after=tomorrow).enqueue(1, 1)
    assert tasks.add.get_result(deferred.id) == deferred
    assert tasks.add.get_result(deferred.id).task.run_after == tomorrow

    with transaction.atomic():
        Order.objects.create(ref=uuid.uuid4().hex)
        ran = tasks.async_echo.enqueue(b"bytes")
    enqueued_at = ran.enqueued_at
    assert finished(ran, worker).return_value == "bytes"
    assert ran.enqueued_at == enqueued_at


# -- task_started / task_finished ---------------------------------------------------


def records(task_id: str) -> list[SignalRecord]:
    """The signals the worker's receivers recorded for a task, in the order sent."""
    return list(SignalRecord.objects.filter(task_id=task_id).order_by("id"))


def test_the_worker_sends_task_started_and_task_finished(outside: Outside, worker: Worker) -> None:
    ok = finished(tasks.add.enqueue(1, 2), worker)
    started, done = records(ok.id)
    assert (started.signal, started.sender, started.status) == ("started", SONIQ_BACKEND, "RUNNING")
    assert started.started_at == started.last_attempted_at == ok.started_at
    assert started.enqueued_at == ok.enqueued_at
    assert (started.attempts, started.errors, started.finished_at) == (1, [], None)
    assert (done.signal, done.sender, done.status) == ("finished", SONIQ_BACKEND, "SUCCESSFUL")
    assert done.return_value == 3 and done.started_at == ok.started_at
    assert done.finished_at is not None and not done.in_exception

    failed = finished(tasks.fail.enqueue("no"), worker)
    started, done = records(failed.id)
    assert (started.status, done.status) == ("RUNNING", "FAILED")
    assert done.errors == ["builtins.ValueError"]
    assert done.in_exception  # sent while the exception is handled, as Django does
    assert done.finished_at is not None and done.started_at == failed.started_at


def test_a_retried_attempt_finishes_ready_and_the_next_one_starts_again(
    outside: Outside, worker: Worker
) -> None:
    result = finished(tasks.flaky.enqueue(failures=1), worker)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == "ok on attempt 2"
    sent = [(r.signal, r.status, r.attempts, r.errors) for r in records(result.id)]
    assert sent == [
        ("started", "RUNNING", 1, []),
        ("finished", "READY", 1, ["builtins.ValueError"]),  # back to the queue for a retry
        ("started", "RUNNING", 2, ["builtins.ValueError"]),  # the last attempt's error
        ("finished", "SUCCESSFUL", 2, ["builtins.ValueError"]),
    ]
    retried = records(result.id)[1]
    assert retried.finished_at is None and retried.in_exception


def test_a_return_value_that_is_not_json_fails_the_task(outside: Outside, worker: Worker) -> None:
    result = finished(tasks.returns_object.enqueue(), worker)
    assert result.status == TaskResultStatus.FAILED
    assert "JSON" in result.errors[0].traceback


def test_options_map_onto_the_job(outside: Outside) -> None:
    later = datetime.now(timezone.utc) + timedelta(days=1)
    urgent = tasks.add.using(priority=100, queue_name="other", run_after=later)
    result = urgent.enqueue(1, 2)
    row = outside.job(result.id)
    assert row is not None
    _, _, queue, priority, scheduled_at, max_attempts = row
    assert (queue, priority, scheduled_at, max_attempts) == ("other", 1, later, 1)
    fetched = tasks.add.get_result(result.id)
    assert fetched.status == TaskResultStatus.READY  # deferred: no worker takes it today
    assert (fetched.task.priority, fetched.task.queue_name) == (100, "other")


def test_priority_mapping_keeps_django_order() -> None:
    assert [to_soniq_priority(p) for p in (100, 0, -100)] == [1, 101, 201]
    assert all(to_django_priority(to_soniq_priority(p)) == p for p in range(-100, 101))
    assert to_django_priority(1000) == -100


@pytest.mark.django_db
def test_invalid_tasks_are_refused_with_a_code() -> None:
    try:
        from django.tasks import task
    except ImportError:
        from django_tasks import task

    def local() -> None: ...

    bad = [
        lambda: task()(local),
        lambda: tasks.add.using(queue_name="nope"),
        lambda: tasks.add.using(run_after=datetime(2030, 1, 1)),  # naive with USE_TZ
        lambda: tasks.add.using(priority=101),
    ]
    for make in bad:
        with pytest.raises(InvalidTask) as err:
            make()
        assert isinstance(err.value, SoniqError) and err.value.code == INVALID_JOB_OPTION


def test_arguments_that_are_not_json_are_refused(outside: Outside) -> None:
    jobs = "SELECT count(*) FROM soniq_jobs"
    before = outside.conn.execute(jobs).fetchone()
    for call, named in (
        (lambda: tasks.add.enqueue(1, datetime.now(timezone.utc)), "positional argument 1"),
        (lambda: tasks.add.enqueue(1, 2, scale={3}), "argument 'scale'"),
        (lambda: tasks.add.enqueue(float("nan"), 2), "positional argument 0"),
        (lambda: tasks.add.enqueue(b"\xff", 2), "positional argument 0"),  # not UTF-8
    ):
        # Django's contract: a TypeError. Soniq's: a SoniqError with a code. Both.
        with pytest.raises(TypeError) as err:
            call()
        assert isinstance(err.value, SoniqError) and err.value.code == ARGS_NOT_SERIALIZABLE
        assert named in err.value.message
    assert outside.conn.execute(jobs).fetchone() == before


@pytest.mark.django_db
def test_unknown_result_ids() -> None:
    import soniq_sync

    with pytest.raises(TaskResultDoesNotExist) as err:
        tasks.add.get_result("not-a-uuid")
    assert isinstance(err.value, SoniqError) and err.value.code == INVALID_JOB_ID
    with pytest.raises(TaskResultDoesNotExist) as err:
        tasks.add.get_result(str(uuid.uuid4()))
    assert isinstance(err.value, SoniqError) and err.value.code == JOB_NOT_FOUND
    plain = soniq_sync.enqueue("testapp.record", args={"ref": "plain"})
    with pytest.raises(TaskResultDoesNotExist) as err:
        tasks.add.get_result(plain)
    assert isinstance(err.value, SoniqError) and err.value.code == JOB_NOT_FOUND


def test_bad_backend_options() -> None:
    from soniq.errors import INVALID_SETTING

    for options in ({"BOGUS": 1}, {"MAX_RETRIES": -1}, {"MAX_RETRIES": "3"}, "x"):
        with pytest.raises(SoniqError) as err:
            SoniqBackend("broken", {"OPTIONS": options})
        assert err.value.code == INVALID_SETTING


@pytest.mark.django_db(transaction=True)
def test_tasks_on_the_memory_backend_keep_the_contract() -> None:
    import soniq_sync
    from soniq_sync.testing import drain, in_memory

    with in_memory(soniq_sync.default_app()):
        result = tasks.add.enqueue(20, 22)
        assert tasks.add.get_result(result.id) == result
        report = drain(soniq_sync.default_app())
        assert report.done == 1
        result.refresh()
        assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, 42)
        started, done = records(result.id)
        assert (started.status, done.status) == ("RUNNING", "SUCCESSFUL")
        assert started.started_at == result.started_at
