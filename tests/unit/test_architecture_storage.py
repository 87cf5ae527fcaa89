"""The storage package owns the queries and the database drivers.

Every module under ``src/`` is parsed: only ``storage`` and the connection adapters
(either API's) may import a database driver, and only ``storage`` may name queries,
by importing the query tables or the loader or by looking a query up by a string.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

DRIVERS = {"psycopg", "psycopg_pool", "sqlite3", "asyncpg", "sqlalchemy", "psycopg2"}
DRIVER_HOMES = ("soniq/storage/", "soniq/adapters/", "soniq_sync/storage/", "soniq_sync/adapters/")
QUERY_HOMES = ("soniq/storage/", "soniq_sync/storage/")
#: Names of the query tables and of the loader.
QUERY_NAMES = {"QUERIES", "SQLITE_QUERIES", "load_queries"}
#: What a query table may be called where it is indexed (``dialect.queries[...]``).
TABLE_NAMES = {"QUERIES", "SQLITE_QUERIES", "queries"}


def driver_imports(source: str) -> list[str]:
    """The database drivers ``source`` imports (top-level package names)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name.partition(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module.partition(".")[0])
    return sorted({name for name in found if name in DRIVERS})


def query_lookups(source: str) -> list[str]:
    """How ``source`` names queries: imports of the tables or the loader, and
    ``table["name"]`` lookups."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            found += [f"import {a.name}" for a in node.names if a.name in QUERY_NAMES]
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            table = node.value
            name = table.id if isinstance(table, ast.Name) else getattr(table, "attr", None)
            if name in TABLE_NAMES and isinstance(node.slice.value, str):
                found.append(f"{name}[{node.slice.value!r}]")
    return found


def modules() -> list[tuple[str, str]]:
    """``(path under src/, source)`` of every module."""
    return [
        (path.relative_to(SRC).as_posix(), path.read_text(encoding="utf-8"))
        for path in sorted(SRC.rglob("*.py"))
    ]


def test_the_source_tree_is_found() -> None:
    paths = [path for path, _ in modules()]
    assert "soniq/storage/store.py" in paths and "soniq/app.py" in paths


def test_only_storage_and_the_adapters_import_a_driver() -> None:
    offenders = {
        path: drivers
        for path, source in modules()
        if not path.startswith(DRIVER_HOMES) and (drivers := driver_imports(source))
    }
    assert offenders == {}


def test_only_storage_names_queries() -> None:
    offenders = {
        path: lookups
        for path, source in modules()
        if not path.startswith(QUERY_HOMES) and (lookups := query_lookups(source))
    }
    assert offenders == {}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import psycopg\n", ["psycopg"]),
        ("from psycopg.rows import dict_row\n", ["psycopg"]),
        ("import sqlite3, json\n", ["sqlite3"]),
        ("def f():\n    from sqlalchemy import text\n", ["sqlalchemy"]),
        ("import psycopg_pool as pool\nimport asyncpg\n", ["asyncpg", "psycopg_pool"]),
        ("import json\nfrom soniq.storage.store import Store\n", []),
    ],
)
def test_the_driver_detector_flags_a_synthetic_offender(source: str, expected: list[str]) -> None:
    assert driver_imports(source) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from soniq.storage.queries import QUERIES\n", ["import QUERIES"]),
        ("from soniq.storage.queries import load_queries as lq\n", ["import load_queries"]),
        ('x = QUERIES["claim_jobs"]\n', ["QUERIES['claim_jobs']"]),
        ('x = backend.dialect.queries["get_job"]\n', ["queries['get_job']"]),
        ('rows = store.jobs.get(job_id)\nx = settings["queue"]\n', []),
        ("x = queries[name]\n", []),  # a variable: the storage code's own helpers
    ],
)
def test_the_query_detector_flags_a_synthetic_offender(source: str, expected: list[str]) -> None:
    assert query_lookups(source) == expected
