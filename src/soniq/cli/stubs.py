"""Finding the TaskRefs of a stub package: a dotted module or a directory, submodules
included (what ``soniq tasks-check`` compares with the fleet)."""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

from soniq.enqueue.task_ref import TaskRef
from soniq.errors import NO_TASK_REFS, STUB_IMPORT_FAILED, SoniqError


def find_task_refs(target: str) -> list[TaskRef[Any]]:
    """Every distinct TaskRef at the top level of ``target``'s modules.

    ``target`` is a dotted module (a package's submodules are imported too), a
    package directory (one with ``__init__.py``; its parent goes on ``sys.path``), a
    plain directory (each module and package in it, the directory on ``sys.path``) or
    a ``.py`` file. The current directory is put on ``sys.path`` first, as for
    ``soniq worker``. Raises SONIQ_STUB_IMPORT_FAILED when a module cannot be
    imported, SONIQ_NO_TASK_REFS when none declares a TaskRef.
    """
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    refs: dict[TaskRef[Any], None] = {}
    for module in _modules(target):
        for value in list(vars(module).values()):
            if isinstance(value, TaskRef):
                refs[value] = None
    if not refs:
        raise SoniqError(
            NO_TASK_REFS,
            f"No TaskRef found in {target!r} or its submodules. Point at the package that "
            "declares them with task_ref(...), e.g. `soniq tasks-check myservice_tasks`.",
            target=target,
        )
    return list(refs)


def _modules(target: str) -> list[ModuleType]:
    path = Path(target)
    if path.is_file() and path.suffix == ".py":
        return _walk(path.stem, path.resolve().parent)
    if path.is_dir():
        folder = path.resolve()
        if (folder / "__init__.py").is_file():
            return _walk(folder.name, folder.parent)
        names = sorted(info.name for info in pkgutil.iter_modules([str(folder)]))
        return [module for name in names for module in _walk(name, folder)]
    if os.sep in target or target.endswith(".py"):
        raise SoniqError(
            STUB_IMPORT_FAILED,
            f"{target!r} is not a directory, a .py file or a dotted module name. Check "
            "the path, or give the package's import name (myservice_tasks).",
            target=target,
        )
    return _walk(target, None)


def _walk(name: str, root: Path | None) -> list[ModuleType]:
    """``name`` and, for a package, every submodule; ``root`` goes on ``sys.path``."""
    if root is not None and str(root) not in sys.path:
        sys.path.insert(0, str(root))
    module = _import(name)
    found = [module]
    search = getattr(module, "__path__", None)
    if search is not None:
        for info in sorted(
            pkgutil.walk_packages(search, prefix=name + ".", onerror=_raise),
            key=lambda info: info.name,
        ):
            found.append(_import(info.name))
    return found


def _raise(name: str) -> None:
    # walk_packages calls this when importing a subpackage (to look inside) failed.
    _import(name)


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except Exception as exc:
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        raise SoniqError(
            STUB_IMPORT_FAILED,
            f"Cannot import stub module {name!r}: {detail}. Install the stub package, or "
            "run from the directory that contains it.",
            module=name,
            traceback=traceback.format_exc(),
        ) from exc
