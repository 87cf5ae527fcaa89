"""Everything ``enqueue`` checks before any I/O: ``plan_job`` and ``JobPlan.row``."""

from __future__ import annotations

import json
import logging
import math
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel

from soniq import JobContext, SoniqError, task_ref
from soniq.core.registry import JobRegistry, JobSpec, build_spec
from soniq.enqueue.plan import JobPlan, JobRow, UnknownNameWarner, plan_job, run_at_to_datetime
from soniq.errors import (
    ARGS_CONFLICT,
    ARGS_NOT_SERIALIZABLE,
    INVALID_DEDUP_KEY,
    INVALID_PRIORITY,
    INVALID_QUEUE,
    INVALID_SCHEDULE,
    INVALID_TARGET,
    NAIVE_DATETIME,
    TASK_ARGS_INVALID,
    UNKNOWN_TASK_NAME,
    ArgsNotSerializableError,
)
from soniq.settings import DEFAULT_TASK_NAME_PATTERN, SoniqSettings


class OrderArgs(BaseModel):
    order_id: int
    note: str = ""


class InvoiceArgs(BaseModel):
    order_id: str
    customer: str


def send_email(to: str, subject: str = "hi") -> None: ...


async def process_order(order_id: int, ctx: JobContext) -> None: ...


def unregistered(x: int) -> None: ...


SPEC_DEFAULTS: dict[str, Any] = {
    "name": None,
    "retries": 3,
    "priority": 100,
    "queue": None,
    "unique": False,
    "retry_delay": 0,
    "retry_backoff": False,
    "retry_max_delay": None,
    "timeout": None,
    "args_model": None,
    "name_pattern": DEFAULT_TASK_NAME_PATTERN,
}


@dataclass
class Harness:
    """A registry, settings and warner, with app.enqueue's way of passing arguments."""

    registry: JobRegistry = field(default_factory=JobRegistry)
    settings: SoniqSettings = field(default_factory=lambda: SoniqSettings.load(environ={}))
    warner: UnknownNameWarner = field(default_factory=UnknownNameWarner)

    def configure(self, **settings: Any) -> Harness:
        self.settings = SoniqSettings.load(environ={}, **settings)
        return self

    def register(self, func: Any, **options: Any) -> JobSpec:
        spec = build_spec(func, **{**SPEC_DEFAULTS, **options})
        self.registry.add(spec)
        return spec

    def plan(
        self, target: object, *, has_args: bool = False, has_kwargs: bool = False, **options: Any
    ) -> JobPlan:
        options = {"priority": None, "queue": None, "scheduled_at": None, "unique": None, **options}
        return plan_job(
            target,
            has_args=has_args,
            has_kwargs=has_kwargs,
            registry=self.registry,
            settings=self.settings,
            warner=self.warner,
            **options,
        )

    def row(
        self,
        target: object,
        args: object = None,
        *,
        kwargs: dict[str, Any] | None = None,
        dedup_key: object = None,
        **options: Any,
    ) -> JobRow:
        """``args`` for names and TaskRefs, ``kwargs`` for functions, as in app.enqueue."""
        plan = self.plan(target, has_args=args is not None, has_kwargs=bool(kwargs), **options)
        return plan.row((kwargs or {}) if plan.by_keywords else args, dedup_key)


@pytest.fixture
def h() -> Harness:
    return Harness()


def raises(code: str, func: Any, *args: Any, **kwargs: Any) -> SoniqError:
    with pytest.raises(SoniqError) as info:
        func(*args, **kwargs)
    assert info.value.code == code, info.value
    return info.value


def args_of(row: JobRow) -> Any:
    return json.loads(row.args_json)


# -- the three target shapes -----------------------------------------------------------


def test_callable_target(h: Harness) -> None:
    h.register(send_email)
    row = h.row(send_email, kwargs={"to": "a@b.c"})
    assert row.job_name == f"{__name__}.send_email"
    assert args_of(row) == {"to": "a@b.c"}
    assert str(uuid.UUID(row.id)) == row.id


def test_callable_registered_under_explicit_name(h: Harness) -> None:
    h.register(send_email, name="users.send_email")
    assert h.row(send_email, kwargs={"to": "x"}).job_name == "users.send_email"


def test_string_target(h: Harness) -> None:
    h.register(send_email, name="users.send_email")
    row = h.row("users.send_email", {"to": "a@b.c", "subject": "Hi"})
    assert row.job_name == "users.send_email"
    assert args_of(row) == {"to": "a@b.c", "subject": "Hi"}


def test_task_ref_target(h: Harness) -> None:
    row = h.row(task_ref("billing.charge", OrderArgs), {"order_id": 7})
    assert row.job_name == "billing.charge"
    assert args_of(row) == {"order_id": 7}


@pytest.mark.parametrize("target", [123, None, b"users.send"], ids=repr)
def test_other_targets_rejected(h: Harness, target: object) -> None:
    raises(INVALID_TARGET, h.plan, target)


@pytest.mark.parametrize(
    ("target", "has_args", "has_kwargs"),
    [
        (send_email, True, False),
        ("users.send_email", False, True),
        (task_ref("users.send_email"), False, True),
    ],
    ids=["callable-with-args", "string-with-kwargs", "taskref-with-kwargs"],
)
def test_args_conflict(h: Harness, target: object, has_args: bool, has_kwargs: bool) -> None:
    h.register(send_email, name="users.send_email")
    raises(ARGS_CONFLICT, h.plan, target, has_args=has_args, has_kwargs=has_kwargs)


# -- unknown names and validation modes -------------------------------------------------


def test_unknown_name_strict(h: Harness) -> None:
    err = raises(UNKNOWN_TASK_NAME, h.plan, "users.sned_email", has_args=True)
    assert err.details["task_name"] == "users.sned_email"
    assert "SONIQ_ENQUEUE_VALIDATION" in err.message


def test_unregistered_callable_strict(h: Harness) -> None:
    err = raises(UNKNOWN_TASK_NAME, h.plan, unregistered, has_kwargs=True)
    assert err.details["task_name"] == f"{__name__}.unregistered"
    assert "@app.job()" in err.message


def test_task_ref_needs_no_registration_in_strict_mode(h: Harness) -> None:
    assert h.settings.enqueue_validation == "strict"
    assert h.row(task_ref("remote.task"), {"a": 1}).job_name == "remote.task"


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "soniq.enqueue" and r.levelno == logging.WARNING]


def test_unknown_name_warn_mode_warns_once(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    h.configure(enqueue_validation="warn")
    caplog.set_level(logging.WARNING, logger="soniq.enqueue")
    assert h.row("remote.task", {"a": 1}).job_name == "remote.task"
    h.row("remote.task", {"a": 2})
    warned = _warnings(caplog)
    assert len(warned) == 1
    assert "remote.task" in warned[0].getMessage()
    h.row("remote.other", {})
    assert len(_warnings(caplog)) == 2


def test_unknown_name_warns_again_after_the_interval(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    now = [1000.0]
    h.configure(enqueue_validation="warn")
    h.warner = UnknownNameWarner(interval=60.0, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="soniq.enqueue")
    h.plan("remote.task")
    now[0] += 59.9
    h.plan("remote.task")
    assert len(_warnings(caplog)) == 1
    now[0] += 0.1
    h.plan("remote.task")
    assert len(_warnings(caplog)) == 2


def test_unknown_name_none_mode_is_silent(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    h.configure(enqueue_validation="none")
    caplog.set_level(logging.DEBUG, logger="soniq")
    assert h.row("remote.task", {"a": 1}).job_name == "remote.task"
    assert h.row(unregistered, kwargs={"x": 1}).job_name == f"{__name__}.unregistered"
    assert caplog.records == []


# -- argument checks -------------------------------------------------------------------


@pytest.mark.parametrize("via", ["string", "taskref"])
def test_args_failing_the_model(h: Harness, via: str) -> None:
    if via == "string":
        h.register(send_email, name="orders.ship", args_model=OrderArgs)
        target: object = "orders.ship"
    else:
        target = task_ref("orders.ship", OrderArgs)
    err = raises(TASK_ARGS_INVALID, h.row, target, {"order_id": "not a number"})
    assert err.details["errors"][0]["loc"] == ("order_id",)
    assert "OrderArgs" in err.message


def test_task_ref_model_rejects_the_documented_typo(h: Harness) -> None:
    ref = task_ref("billing.invoices.send.v2", InvoiceArgs)
    err = raises(TASK_ARGS_INVALID, h.row, ref, {"order_id": 123, "customer": "acme"})
    assert [e["loc"] for e in err.details["errors"]] == [("order_id",)]


@pytest.mark.parametrize(
    ("target", "kwargs"),
    [
        (send_email, {}),
        (send_email, {"to": "a", "cc": "b"}),
        ("users.send_email", {}),
        ("users.send_email", {"to": "a", "cc": "b"}),
        (process_order, {}),
        (process_order, {"order_id": 1, "ctx": None}),
    ],
    ids=[
        "callable-missing",
        "callable-extra",
        "string-missing",
        "string-extra",
        "ctx-missing-real-param",
        "ctx-passed-explicitly",
    ],
)
def test_signature_check_without_model(h: Harness, target: object, kwargs: dict[str, Any]) -> None:
    h.register(send_email, name="users.send_email")
    h.register(process_order)
    if isinstance(target, str):
        raises(TASK_ARGS_INVALID, h.row, target, kwargs)
    else:
        raises(TASK_ARGS_INVALID, h.row, target, kwargs=kwargs)


def test_job_context_parameter_is_not_required(h: Harness) -> None:
    h.register(process_order)
    assert args_of(h.row(process_order, kwargs={"order_id": 1})) == {"order_id": 1}


@pytest.mark.parametrize("args", [[("a", 1)], "a=1", 5], ids=repr)
def test_args_must_be_a_dict(h: Harness, args: object) -> None:
    raises(TASK_ARGS_INVALID, h.row, task_ref("remote.task"), args)


def test_args_keys_must_be_strings(h: Harness) -> None:
    err = raises(TASK_ARGS_INVALID, h.row, task_ref("remote.task"), {1: "x"})
    assert "1" in err.message


@pytest.mark.parametrize(
    "value",
    [
        object(),
        {1, 2},
        datetime(2025, 1, 1, tzinfo=timezone.utc),
        float("nan"),
        float("inf"),
        {"nested": {3}},
    ],
    ids=["object", "set", "datetime", "nan", "inf", "nested-set"],
)
def test_args_not_serialisable(h: Harness, value: object) -> None:
    err = raises(ARGS_NOT_SERIALIZABLE, h.row, task_ref("remote.task"), {"ok": 1, "payload": value})
    assert isinstance(err, ArgsNotSerializableError) and isinstance(err, TypeError)
    assert "payload" in err.message
    assert "'ok'" not in err.message
    assert err.details["task_name"] == "remote.task"


def test_pydantic_model_instance_as_args(h: Harness) -> None:
    h.register(send_email, name="orders.ship", args_model=OrderArgs)
    for target in ("orders.ship", task_ref("orders.other", OrderArgs)):
        assert args_of(h.row(target, OrderArgs(order_id=3))) == {"order_id": 3, "note": ""}


# -- scheduled_at ----------------------------------------------------------------------


def test_naive_scheduled_at(h: Harness) -> None:
    raises(NAIVE_DATETIME, h.plan, task_ref("remote.task"), scheduled_at=datetime(2030, 1, 1))


# (A number is seconds from now, like schedule()'s run_at: tests/behaviour/test_parity.py.)
@pytest.mark.parametrize("value", ["2030-01-01T00:00:00Z", date(2030, 1, 1), True])
def test_scheduled_at_must_be_a_datetime(h: Harness, value: object) -> None:
    raises(INVALID_SCHEDULE, h.plan, task_ref("remote.task"), scheduled_at=value)


def test_aware_scheduled_at_becomes_utc(h: Harness) -> None:
    local = datetime(2030, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    scheduled = h.plan(task_ref("remote.task"), scheduled_at=local).scheduled_at
    assert scheduled == local
    assert scheduled is not None and scheduled.tzinfo == timezone.utc
    assert scheduled.hour == 10


# -- options and their precedence --------------------------------------------------------


@pytest.mark.parametrize("priority", [0, 1001, "5", True, 2.0], ids=repr)
def test_priority_out_of_range_at_enqueue(h: Harness, priority: object) -> None:
    raises(INVALID_PRIORITY, h.plan, task_ref("remote.task"), priority=priority)


@pytest.mark.parametrize("queue", ["", 7], ids=repr)
def test_bad_queue_at_enqueue(h: Harness, queue: object) -> None:
    raises(INVALID_QUEUE, h.plan, task_ref("remote.task"), queue=queue)


def test_queue_precedence(h: Harness) -> None:
    h.register(send_email, name="local.task", queue="registered")
    local = task_ref("local.task", default_queue="from-ref")
    assert h.plan(local, queue="explicit").queue == "explicit"
    assert h.plan(local).queue == "registered"
    assert h.plan(task_ref("remote.task", default_queue="from-ref")).queue == "from-ref"
    assert h.plan(task_ref("remote.task")).queue == "default"


def test_registration_without_queue_defers_to_the_taskref(h: Harness) -> None:
    # The spec's consumer registers the stub's name without queue= and serves the
    # stub's default queue; its own enqueues through the stub must land there too.
    h.register(send_email, name="billing.send")
    assert h.plan(task_ref("billing.send", default_queue="billing")).queue == "billing"
    assert h.plan("billing.send").queue == "default"
    assert h.plan(send_email).queue == "default"


def test_priority_precedence(h: Harness) -> None:
    h.configure(priority=7)
    h.register(send_email, name="local.task", priority=20)
    assert h.plan("local.task", priority=3).priority == 3
    assert h.plan("local.task").priority == 20
    assert h.plan(task_ref("remote.task")).priority == 7


def test_max_attempts(h: Harness) -> None:
    h.register(send_email, name="local.task", retries=5)
    assert h.plan("local.task").max_attempts == 6
    assert h.plan(task_ref("remote.task")).max_attempts == 4
    assert h.configure(max_retries=0).plan(task_ref("remote.task")).max_attempts == 1


# -- deduplication ---------------------------------------------------------------------


def test_no_dedup_key_by_default(h: Harness) -> None:
    assert h.row(task_ref("remote.task"), {"a": 1}).dedup_key is None


def test_unique_dedup_key_hashes_the_args(h: Harness) -> None:
    ref = task_ref("remote.task")

    def key(args: dict[str, Any]) -> str | None:
        return h.row(ref, args, unique=True).dedup_key

    first = key({"a": 1, "b": {"x": 1, "y": 2}})
    assert first is not None
    assert key({"b": {"y": 2, "x": 1}, "a": 1}) == first
    assert key({"a": 1, "b": {"x": 1, "y": 3}}) != first
    assert key({}) not in (None, first)


def test_registered_unique_and_its_override(h: Harness) -> None:
    h.register(send_email, unique=True)
    assert h.row(send_email, kwargs={"to": "a"}).dedup_key is not None
    assert h.row(send_email, kwargs={"to": "a"}, unique=False).dedup_key is None


def test_explicit_dedup_key_is_used_as_is(h: Harness) -> None:
    ref = task_ref("remote.task")
    assert h.row(ref, {"a": 1}, dedup_key="order-7").dedup_key == "order-7"
    assert h.row(ref, {"a": 1}, dedup_key="order-7", unique=True).dedup_key == "order-7"


@pytest.mark.parametrize("key", ["", 5, b"k", "k" * 1001], ids=lambda k: repr(k)[:12])
def test_bad_dedup_key(h: Harness, key: object) -> None:
    raises(INVALID_DEDUP_KEY, h.row, task_ref("remote.task"), {"a": 1}, dedup_key=key)


# -- run_at_to_datetime (schedule's run_at) -----------------------------------------------


@pytest.mark.parametrize(
    ("run_at", "offset"),
    [(30, 30.0), (0, 0.0), (1.5, 1.5), (timedelta(minutes=5), 300.0)],
    ids=repr,
)
def test_run_at_relative(run_at: object, offset: float) -> None:
    before = datetime.now(timezone.utc)
    result = run_at_to_datetime(run_at)
    after = datetime.now(timezone.utc)
    assert result.tzinfo == timezone.utc
    delta = timedelta(seconds=offset)
    assert before + delta <= result <= after + delta


def test_run_at_aware_datetime() -> None:
    local = datetime(2030, 6, 1, 9, 0, tzinfo=timezone(timedelta(hours=-5)))
    result = run_at_to_datetime(local)
    assert result == local and result.tzinfo == timezone.utc


def test_run_at_naive_datetime() -> None:
    raises(NAIVE_DATETIME, run_at_to_datetime, datetime(2030, 6, 1, 9, 0))


@pytest.mark.parametrize(
    "run_at", [-1, -0.5, math.inf, -math.inf, math.nan, True, False, None, "10"], ids=repr
)
def test_run_at_invalid(run_at: object) -> None:
    raises(INVALID_SCHEDULE, run_at_to_datetime, run_at)
