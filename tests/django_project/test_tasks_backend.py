"""The tasks backend: @task functions stored as Soniq jobs and run by `soniq worker`."""

from __future__ import annotations

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
from tests.helpers import wait_for_sync


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
    with pytest.raises(SoniqError) as err:
        tasks.add.enqueue(1, datetime.now(timezone.utc))
    assert err.value.code == ARGS_NOT_SERIALIZABLE
    assert "positional argument 1" in err.value.message


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
