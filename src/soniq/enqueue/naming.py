"""Task-name rules: deriving names from functions and checking explicit ones."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from soniq.errors import INVALID_SETTING, INVALID_TASK_NAME, SoniqError, SoniqValueError
from soniq.settings import DEFAULT_TASK_NAME_PATTERN


def derive_task_name(func: Callable[..., Any]) -> str:
    """The default name of a handler: ``f"{module}.{qualname}"``.

    A function defined in a script run as ``python jobs.py`` lives in ``__main__``;
    the worker imports the same file as ``jobs``. Naming it after the file keeps the
    producer's name and the worker's name the same.
    """
    module = getattr(func, "__module__", None) or "__main__"
    if module == "__main__":
        module = _main_module_name()
    return f"{module}.{func.__qualname__}"


def _main_module_name() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":
        return str(spec.name)
    file = getattr(main, "__file__", None)
    return Path(file).stem if file else "__main__"


def check_task_name(name: object, pattern: str | None = None) -> str:
    """Return ``name`` if it is a valid explicit task name, else raise SoniqError."""
    if not isinstance(name, str) or not name:
        raise SoniqError(
            INVALID_TASK_NAME,
            f"A task name must be a non-empty string, got {name!r}.",
            task_name=name,
        )
    regex = pattern or os.environ.get("SONIQ_TASK_NAME_PATTERN") or DEFAULT_TASK_NAME_PATTERN
    try:
        compiled = _compiled(regex)
    except re.error as exc:
        raise SoniqValueError(
            INVALID_SETTING,
            f"SONIQ_TASK_NAME_PATTERN {regex!r} is not a valid regular expression ({exc}). "
            "Fix it or unset it to use the default.",
            setting="SONIQ_TASK_NAME_PATTERN",
        ) from None
    if compiled.fullmatch(name) is None:
        raise SoniqError(
            INVALID_TASK_NAME,
            f"Task name {name!r} does not match SONIQ_TASK_NAME_PATTERN ({regex}). "
            "Use lowercase ASCII words joined by dots, e.g. 'billing.invoices.send.v2'.",
            task_name=name,
            pattern=regex,
        )
    return name


@lru_cache(maxsize=16)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def check_wire_name(name: object, pattern: str) -> str:
    """:func:`check_task_name` for a name given at enqueue, which no local registration
    serves: the same check, with the names that passed remembered (enqueue's hot path
    sees the same few names over and over)."""
    if isinstance(name, str):
        return _wire_name(name, pattern)
    return check_task_name(name, pattern)


@lru_cache(maxsize=4096)
def _wire_name(name: str, pattern: str) -> str:
    # A name that fails raises, and lru_cache keeps only what returned.
    return check_task_name(name, pattern)
