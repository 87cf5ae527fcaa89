"""The original Soniq's exception shapes: built-in bases, attribute names, classes.

Code written against the original catches ``TypeError``/``ValueError`` and reads
``error_code``, ``context``, ``suggestions``; each case keeps Soniq's stable code.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import pytest

import soniq_sync
from soniq import Soniq, SoniqError, TaskRef, cron, daily, every, monthly, task_ref, weekly
from soniq.errors import (
    ALL_CODES,
    AMBIGUOUS_APP,
    CRON_OR_EVERY,
    INVALID_CRON,
    INVALID_INTERVAL,
    INVALID_QUEUE,
    INVALID_SETTING,
    MIGRATION_FAILED,
    AmbiguousAppError,
    BackendUnsupportedError,
    MigrationError,
    SoniqTypeError,
    SoniqValueError,
)
from soniq.settings import SoniqSettings

DSL_CASES: dict[str, tuple[Callable[[], object], type[Exception]]] = {
    "cron(5)": (lambda: cron(5), TypeError),  # type: ignore[arg-type]
    "cron(None)": (lambda: cron(None), TypeError),  # type: ignore[arg-type]
    "cron('61 * * * *')": (lambda: cron("61 * * * *"), ValueError),
    "daily().at('25:00')": (lambda: daily().at("25:00"), ValueError),
    "daily().at('9')": (lambda: daily().at("9"), ValueError),
    "daily().at(9)": (lambda: daily().at(9), TypeError),  # type: ignore[arg-type]
    "every(0)": (lambda: every(0), ValueError),
    "every(-1)": (lambda: every(-1), ValueError),
    "every('5')": (lambda: every("5"), TypeError),  # type: ignore[arg-type]
    "monthly().on_day(32)": (lambda: monthly().on_day(32), ValueError),
    "monthly().on_day(0)": (lambda: monthly().on_day(0), ValueError),
    "weekly().on('funday')": (lambda: weekly().on("funday"), ValueError),
    "weekly().on(8)": (lambda: weekly().on(8), ValueError),
    "weekly().on(None)": (lambda: weekly().on(None), TypeError),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("case", DSL_CASES)
def test_schedules_dsl_bad_input_is_a_value_or_type_error(case: str) -> None:
    make, builtin = DSL_CASES[case]
    with pytest.raises(builtin) as info:
        make()
    err = info.value
    assert isinstance(err, SoniqError) and isinstance(err, ValueError)
    assert err.code == INVALID_CRON


def test_weekday_numbers_follow_cron_and_accept_7_for_sunday() -> None:
    names = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]
    for number, name in enumerate(names):
        assert weekly().on(number).at("09:30") == weekly().on(name).at("09:30")
        assert weekly().on(number).at("09:30") == f"30 9 * * {number}"
    assert weekly().on(7).at("08:00") == weekly().on("sun").at("08:00") == "0 8 * * 0"


def test_every_n_days() -> None:
    assert every(1).days() == "0 0 */1 * *"
    assert every(3).days() == "0 0 */3 * *"
    with pytest.raises(ValueError) as info:
        every(32).days()
    assert isinstance(info.value, SoniqError) and info.value.code == INVALID_CRON


PERIODIC_CASES: dict[str, tuple[dict[str, Any], str]] = {
    "both": ({"cron": "* * * * *", "every": 5}, CRON_OR_EVERY),
    "neither": ({}, CRON_OR_EVERY),
    "bad cron": ({"cron": "61 * * * *"}, INVALID_CRON),
    "zero interval": ({"every": 0}, INVALID_INTERVAL),
}


@pytest.mark.parametrize("case", PERIODIC_CASES)
@pytest.mark.parametrize("make_app", [Soniq, soniq_sync.Soniq], ids=["async", "sync"])
def test_periodic_misuse_is_a_value_error(case: str, make_app: Callable[..., Any]) -> None:
    kwargs, code = PERIODIC_CASES[case]
    app = make_app(backend="memory")
    with pytest.raises(ValueError) as info:
        app.periodic(**kwargs)
    assert isinstance(info.value, SoniqError) and info.value.code == code
    assert app.periodic_jobs == {}


@pytest.mark.parametrize(
    "kwargs", [{"log_level": "LOUD"}, {"enqueue_validation": "maybe"}], ids=["level", "mode"]
)
def test_bad_settings_are_value_errors(kwargs: dict[str, str]) -> None:
    for build in (lambda: Soniq(**kwargs), lambda: SoniqSettings.load({}, **kwargs)):
        with pytest.raises(ValueError) as info:
            build()
        assert isinstance(info.value, SoniqError) and info.value.code == INVALID_SETTING


def test_bad_setting_from_the_environment_is_a_value_error() -> None:
    with pytest.raises(ValueError) as info:
        SoniqSettings.load({"SONIQ_LOG_LEVEL": "chatty"})
    assert isinstance(info.value, SoniqError)
    assert info.value.details["setting"] == "SONIQ_LOG_LEVEL"


def test_error_exposes_the_original_attribute_names() -> None:
    err = SoniqError(INVALID_QUEUE, "Queue is blank.", queue="", suggestions=["Name it."])
    assert (err.error_code, err.code) == (INVALID_QUEUE, INVALID_QUEUE)
    assert err.context == err.details == {"queue": ""}
    assert err.suggestions == ["Name it."]
    assert err.message == "Queue is blank."
    assert str(err) == "SONIQ_INVALID_QUEUE: Queue is blank. Suggestions: Name it."
    plain = SoniqError(INVALID_QUEUE, "Queue is blank.")
    assert plain.suggestions == [] and str(plain) == "SONIQ_INVALID_QUEUE: Queue is blank."


@pytest.mark.parametrize(
    "err",
    [
        SoniqError(INVALID_QUEUE, "m", queue="", suggestions=["s"]),
        SoniqTypeError(INVALID_QUEUE, "m", queue=3),
        SoniqValueError(INVALID_CRON, "m", cron="x"),
        BackendUnsupportedError("m", backend="sqlite"),
        MigrationError("m", version="0001_initial"),
        AmbiguousAppError("m", apps=["a", "b"]),
    ],
    ids=lambda e: type(e).__name__,
)
def test_every_error_class_pickles_as_itself(err: SoniqError) -> None:
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is type(err)
    assert (copy.code, copy.message, copy.details, copy.suggestions) == (
        err.code,
        err.message,
        err.details,
        err.suggestions,
    )
    assert str(copy) == str(err)


def test_the_original_error_classes_have_stable_codes() -> None:
    migration = MigrationError("0003 failed.")
    assert isinstance(migration, SoniqError) and migration.code == MIGRATION_FAILED
    ambiguous = AmbiguousAppError("Two apps.")
    assert isinstance(ambiguous, SoniqError) and isinstance(ambiguous, RuntimeError)
    assert ambiguous.code == AMBIGUOUS_APP
    assert {MIGRATION_FAILED, AMBIGUOUS_APP} <= ALL_CODES


def test_task_ref_is_frozen_slotted_hashable_with_default_queue() -> None:
    ref = task_ref("billing.invoices.send")
    routed = ref.with_default_queue("billing")
    assert routed is not ref
    assert (routed.name, routed.default_queue, ref.default_queue) == (
        "billing.invoices.send",
        "billing",
        None,
    )
    assert routed.with_default_queue(None) == ref
    assert hash(task_ref("billing.invoices.send")) == hash(ref)
    assert {ref: 1, routed: 2}[task_ref("billing.invoices.send", default_queue="billing")] == 2
    assert not hasattr(ref, "__dict__") and TaskRef.__slots__ == (
        "name",
        "args_model",
        "default_queue",
        "concurrency",
        "rate_limit",
        "result_model",
    )
    with pytest.raises(AttributeError):
        ref.name = "other"  # type: ignore[misc]
    assert repr(routed) == (
        "TaskRef(name='billing.invoices.send', args_model=None, default_queue='billing')"
    )
    with pytest.raises(SoniqError) as info:
        ref.with_default_queue("")
    assert info.value.code == INVALID_QUEUE
