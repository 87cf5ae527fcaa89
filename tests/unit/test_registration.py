"""``@app.job()``: what it records, what it rejects, all without a database."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from pydantic import BaseModel

import soniq.app
import soniq.storage.backend
from soniq import JobContext, Soniq, SoniqError
from soniq.core.registry import JobSpec
from soniq.errors import (
    DUPLICATE_TASK_NAME,
    INVALID_JOB_OPTION,
    INVALID_PRIORITY,
    INVALID_QUEUE,
    INVALID_TASK_NAME,
)


class Args(BaseModel):
    order_id: int


class OtherArgs(BaseModel):
    name: str


def add(a: int, b: int) -> int:
    return a + b


async def send_email(to: str) -> None: ...


def other(to: str) -> None: ...


def register(app: Soniq, func: Any = add, **options: Any) -> JobSpec:
    app.job(**options)(func)
    spec = app.registry.for_function(func)
    assert spec is not None
    return spec


def test_construction_does_not_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("Soniq(...) opened a connection")

    monkeypatch.setattr(psycopg.AsyncConnection, "connect", refuse)
    monkeypatch.setattr(psycopg.Connection, "connect", refuse)
    monkeypatch.setattr(soniq.storage.backend, "connect", refuse)
    for app in (Soniq(), Soniq("postgresql://nobody@db.invalid:5432/nowhere")):
        assert register(app).name == f"{__name__}.add"


def test_no_database_url_is_fine_until_used(app: Soniq) -> None:
    assert app.settings.database_url is None
    assert len(app.registry) == 0


def test_decorator_returns_the_function_unchanged(app: Soniq) -> None:
    assert app.job()(add) is add
    assert app.job()(send_email) is send_email
    assert add(2, 3) == 5


def test_bare_decorator_is_rejected(app: Soniq) -> None:
    with pytest.raises(SoniqError) as info:
        app.job(add)  # type: ignore[arg-type]
    assert info.value.code == INVALID_JOB_OPTION
    assert "@app.job()" in info.value.message
    assert len(app.registry) == 0


def test_default_name_is_module_qualname(app: Soniq) -> None:
    assert register(app).name == f"{__name__}.add"
    assert app.registry.names() == [f"{__name__}.add"]


def test_derived_names_skip_the_pattern(app: Soniq) -> None:
    class Handlers:
        @staticmethod
        def Process() -> None: ...

    spec = register(app, Handlers.Process)
    assert spec.name.endswith("<locals>.Handlers.Process")


def test_explicit_name(app: Soniq) -> None:
    register(app, name="billing.invoices.send.v2")
    spec = app.registry.get("billing.invoices.send.v2")
    assert spec is not None and spec.func is add


def test_bad_explicit_name_fails_at_decoration(app: Soniq) -> None:
    decorator = app.job(name="Billing Send")
    with pytest.raises(SoniqError) as info:
        decorator(add)
    assert info.value.code == INVALID_TASK_NAME
    assert len(app.registry) == 0


def test_app_task_name_pattern_is_used() -> None:
    app = Soniq(task_name_pattern=r"^[A-Z]+$")
    assert register(app, name="BILLING").name == "BILLING"
    with pytest.raises(SoniqError) as info:
        register(app, other, name="billing")
    assert info.value.code == INVALID_TASK_NAME


BAD_OPTIONS = [
    ({"retries": -1}, INVALID_JOB_OPTION),
    ({"retries": 1.5}, INVALID_JOB_OPTION),
    ({"retries": "3"}, INVALID_JOB_OPTION),
    ({"retries": True}, INVALID_JOB_OPTION),
    ({"max_retries": -2}, INVALID_JOB_OPTION),
    ({"priority": 0}, INVALID_PRIORITY),
    ({"priority": 1001}, INVALID_PRIORITY),
    ({"priority": "5"}, INVALID_PRIORITY),
    ({"priority": True}, INVALID_PRIORITY),
    ({"priority": 5.0}, INVALID_PRIORITY),
    ({"queue": ""}, INVALID_QUEUE),
    ({"queue": "   "}, INVALID_QUEUE),
    ({"queue": 123}, INVALID_QUEUE),
    ({"retry_delay": -1}, INVALID_JOB_OPTION),
    ({"retry_delay": []}, INVALID_JOB_OPTION),
    ({"retry_delay": [1, -5]}, INVALID_JOB_OPTION),
    ({"retry_delay": "5"}, INVALID_JOB_OPTION),
    ({"retry_delay": float("nan")}, INVALID_JOB_OPTION),
    ({"retry_max_delay": 0}, INVALID_JOB_OPTION),
    ({"retry_max_delay": -1}, INVALID_JOB_OPTION),
    ({"timeout": 0}, INVALID_JOB_OPTION),
    ({"timeout": -3}, INVALID_JOB_OPTION),
    ({"validate": dict}, INVALID_JOB_OPTION),
    ({"validate": Args(order_id=1)}, INVALID_JOB_OPTION),
    ({"args_model": int}, INVALID_JOB_OPTION),
]


@pytest.mark.parametrize(("options", "code"), BAD_OPTIONS, ids=repr)
def test_bad_option_rejected_at_decoration(app: Soniq, options: dict[str, Any], code: str) -> None:
    decorator = app.job(**options)
    with pytest.raises(SoniqError) as info:
        decorator(add)
    assert info.value.code == code
    assert len(app.registry) == 0


@pytest.mark.parametrize(
    "options",
    [
        {"retries": 1, "max_retries": 2},
        {"validate": Args, "args_model": OtherArgs},
    ],
    ids=repr,
)
def test_conflicting_aliases(app: Soniq, options: dict[str, Any]) -> None:
    with pytest.raises(SoniqError) as info:
        app.job(**options)
    assert info.value.code == INVALID_JOB_OPTION
    assert "alias" in info.value.message


def test_aliases(app: Soniq) -> None:
    register(app, add, name="a", max_retries=7, args_model=Args)
    spec = app.registry.get("a")
    assert spec is not None
    assert (spec.retries, spec.args_model) == (7, Args)
    # The same value under both spellings is not a conflict.
    assert (
        register(app, other, retries=2, max_retries=2, validate=Args, args_model=Args).retries == 2
    )


@pytest.mark.parametrize("retries", [0, 1, 5])
def test_max_attempts_is_retries_plus_one(app: Soniq, retries: int) -> None:
    assert register(app, retries=retries).max_attempts == retries + 1


def test_defaults(app: Soniq) -> None:
    spec = register(app)
    assert spec.retries == 3
    assert spec.priority == 100
    assert spec.queue is None  # not chosen: enqueue falls back to "default"
    assert spec.unique is False
    assert spec.retry_delay == 0.0
    assert spec.retry_backoff is False
    assert spec.retry_max_delay is None
    assert spec.timeout is None
    assert spec.args_model is None


def test_app_settings_supply_retries_and_priority_defaults() -> None:
    spec = register(Soniq(max_retries=1, priority=9))
    assert (spec.retries, spec.priority) == (1, 9)


def test_options_are_recorded(app: Soniq) -> None:
    spec = register(
        app,
        retries=5,
        priority=10,
        queue="urgent",
        unique=True,
        retry_delay=[1, 5, 30],
        retry_backoff=True,
        retry_max_delay=60,
        timeout=120,
        validate=Args,
    )
    assert (spec.retries, spec.priority, spec.queue, spec.unique) == (5, 10, "urgent", True)
    assert spec.retry_delay == (1.0, 5.0, 30.0)
    assert (spec.retry_backoff, spec.retry_max_delay, spec.timeout) == (True, 60.0, 120.0)
    assert spec.args_model is Args


def with_context(order_id: int, ctx: JobContext) -> None: ...


def test_job_context_parameter_detected(app: Soniq) -> None:
    assert register(app, with_context).context_param == "ctx"
    assert register(app, add).context_param is None


def test_duplicate_explicit_name(app: Soniq) -> None:
    register(app, add, name="dup")
    with pytest.raises(SoniqError) as info:
        register(app, other, name="dup")
    assert info.value.code == DUPLICATE_TASK_NAME
    assert info.value.details["task_name"] == "dup"
    assert app.registry.get("dup").func is add  # type: ignore[union-attr]


def test_reregistering_the_same_function_replaces_it(app: Soniq) -> None:
    register(app, add, name="same", priority=50)
    register(app, add, name="same", priority=5)
    assert len(app.registry) == 1
    assert app.registry.get("same").priority == 5  # type: ignore[union-attr]


def test_sync_and_async_functions(app: Soniq) -> None:
    assert register(app, add).is_async is False
    assert register(app, send_email).is_async is True


def test_registry_lookups_the_docs_use(app: Soniq) -> None:
    from soniq.core.registry import JobRegistry

    @app.job(name="docs.lookup", retries=4, queue="q")
    def handler() -> None: ...

    registry = app._get_job_registry()
    assert isinstance(registry, JobRegistry)
    meta = registry.get_job("docs.lookup")
    assert meta is not None
    assert (meta["max_retries"], meta["max_attempts"], meta["queue"]) == (4, 5, "q")
    assert registry.get_job("docs.missing") is None
