"""Task names: deriving them from functions and checking explicit ones."""

from __future__ import annotations

import sys
import types

import pytest

from soniq import SoniqError, task_ref
from soniq.enqueue.naming import check_task_name, derive_task_name
from soniq.errors import INVALID_TASK_NAME


def module_level() -> None: ...


class Outer:
    def method(self) -> None: ...

    class Inner:
        def deep(self) -> None: ...


def test_derived_name_is_module_dot_qualname() -> None:
    assert derive_task_name(module_level) == f"{__name__}.module_level"


def test_derived_name_uses_nested_qualname() -> None:
    assert derive_task_name(Outer.method) == f"{__name__}.Outer.method"
    assert derive_task_name(Outer.Inner.deep) == f"{__name__}.Outer.Inner.deep"


def _main_function() -> types.FunctionType:
    def send() -> None: ...

    send.__module__ = "__main__"
    send.__qualname__ = "send"
    return send


def test_main_module_is_named_after_the_script(monkeypatch: pytest.MonkeyPatch) -> None:
    main = types.ModuleType("__main__")
    main.__file__ = "/x/jobs.py"
    main.__spec__ = None
    monkeypatch.setitem(sys.modules, "__main__", main)
    assert derive_task_name(_main_function()) == "jobs.send"


def test_main_module_run_with_dash_m_uses_the_spec_name(monkeypatch: pytest.MonkeyPatch) -> None:
    main = types.ModuleType("__main__")
    main.__file__ = "/x/pkg/jobs.py"
    main.__spec__ = types.SimpleNamespace(name="pkg.jobs")  # type: ignore[assignment]
    monkeypatch.setitem(sys.modules, "__main__", main)
    assert derive_task_name(_main_function()) == "pkg.jobs.send"


@pytest.mark.parametrize(
    "name", ["billing.invoices.send.v2", "cleanup", "reports.daily", "a-b_c.d9"]
)
def test_valid_names(name: str) -> None:
    assert check_task_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "Billing.Send", "a..b", ".a", "a.", "has space", "ünïcode", "trailing\n", None, 5, b"x"],
    ids=repr,
)
def test_invalid_names(name: object) -> None:
    with pytest.raises(SoniqError) as info:
        check_task_name(name)
    assert info.value.code == INVALID_TASK_NAME
    assert info.value.details["task_name"] == name


def test_custom_pattern_argument() -> None:
    assert check_task_name("Billing.Send", r"^[A-Za-z.]+$") == "Billing.Send"
    with pytest.raises(SoniqError) as info:
        check_task_name("cleanup", r"^[A-Z]+$")
    assert info.value.code == INVALID_TASK_NAME
    assert "[A-Z]" in info.value.message


def test_env_pattern_is_used_by_task_ref(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SONIQ_TASK_NAME_PATTERN", r"^[A-Z]+(:[A-Z]+)*$")
    assert task_ref("BILLING:SEND").name == "BILLING:SEND"
    with pytest.raises(SoniqError) as info:
        task_ref("billing.send")
    assert info.value.code == INVALID_TASK_NAME


def test_pattern_argument_beats_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SONIQ_TASK_NAME_PATTERN", r"^[A-Z]+$")
    assert check_task_name("cleanup", r"^[a-z]+$") == "cleanup"


def test_invalid_env_pattern_is_a_soniq_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SONIQ_TASK_NAME_PATTERN", "[unclosed")
    with pytest.raises(SoniqError) as info:
        task_ref("billing.send")
    assert info.value.code == "SONIQ_INVALID_SETTING"
