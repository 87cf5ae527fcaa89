"""The SQL files, the Query helper and the error codes."""

from __future__ import annotations

import pickle
import re

import pytest

from soniq import errors
from soniq.errors import (
    ALL_CODES,
    ARGS_NOT_SERIALIZABLE,
    INVALID_SETTING,
    ArgsNotSerializableError,
    SoniqError,
)
from soniq.storage.queries import QUERIES, Query, load_queries, migration_files

USED_BY_THE_APP = {
    "insert_job",
    "find_queued_duplicate",
    "copy_jobs",
    "copy_jobs_scheduled",
    "notify_queues",
    "get_job",
    "get_dead_letter_job",
    "list_jobs",
    "cancel_job",
    "get_result",
    "delete_job",
    "queue_stats",
    "queue_totals",
}


def test_queries_loaded() -> None:
    assert set(QUERIES) >= USED_BY_THE_APP


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_every_query_parses(name: str) -> None:
    query = QUERIES[name]
    assert isinstance(query, Query)
    assert query.name == name
    assert query.text and "-- name:" not in query.text
    assert query.psycopg == query.text.encode()
    # $n rewriting leaves no %(name)s behind and numbers 1..n with no gaps.
    assert "%(" not in query.dollar
    numbers = {int(n) for n in re.findall(r"\$(\d+)", query.dollar)}
    assert numbers == set(range(1, len(query.param_names) + 1))


def test_load_queries_splits_and_strips_comments() -> None:
    text = "-- header\n\n-- name: one\n-- a comment\nSELECT 1\n\n-- name: two\nSELECT 2\n"
    loaded = load_queries(text)
    assert list(loaded) == ["one", "two"]
    assert (loaded["one"].text, loaded["two"].text) == ("SELECT 1", "SELECT 2")


def test_dollar_numbers_each_name_once() -> None:
    query = Query("q", "SELECT %(a)s, %(b)s WHERE x = %(a)s AND y LIKE 'z%%'")
    assert query.param_names == ("a", "b")
    assert query.dollar == "SELECT $1, $2 WHERE x = $1 AND y LIKE 'z%'"


def test_positional_follows_dollar_order() -> None:
    query = Query("q", "UPDATE t SET x = %(x)s WHERE id = %(id)s AND x <> %(x)s")
    assert query.positional({"id": 7, "x": "new", "unused": 0}) == ["new", 7]


def test_migration_files() -> None:
    found = migration_files()
    assert found
    versions = [version for version, _ in found]
    assert versions == sorted(versions)
    assert len(set(versions)) == len(versions)
    for version, sql in found:
        assert re.fullmatch(r"\d{4}_\w+", version)
        assert sql.strip()


def _code_constants() -> dict[str, str]:
    return {
        name: value
        for name, value in vars(errors).items()
        if name.isupper() and isinstance(value, str)
    }


def test_error_codes() -> None:
    constants = _code_constants()
    assert constants
    for name, code in constants.items():
        assert code.startswith("SONIQ_"), name
        assert code == "SONIQ_" + name, name
    assert set(constants.values()) == ALL_CODES
    assert len(set(constants.values())) == len(constants)


def test_soniq_error_carries_code_and_details() -> None:
    err = SoniqError(INVALID_SETTING, "Bad value.", setting="SONIQ_X")
    assert (err.code, err.message, err.details) == (
        INVALID_SETTING,
        "Bad value.",
        {"setting": "SONIQ_X"},
    )
    assert str(err) == f"{INVALID_SETTING}: Bad value."


def test_soniq_error_pickles() -> None:
    err = SoniqError(INVALID_SETTING, "Bad value.", setting="SONIQ_X", values=[1, 2])
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is SoniqError
    assert copy.code == INVALID_SETTING
    assert copy.message == err.message
    assert copy.details == {"setting": "SONIQ_X", "values": [1, 2]}
    assert str(copy) == str(err)


def test_args_not_serializable_is_a_type_error_and_pickles() -> None:
    err = ArgsNotSerializableError("No sets.", task_name="a.task")
    assert isinstance(err, SoniqError) and isinstance(err, TypeError)
    assert err.code == ARGS_NOT_SERIALIZABLE
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is ArgsNotSerializableError
    assert (copy.code, copy.message, copy.details) == (err.code, err.message, err.details)
    assert str(copy) == str(err) == f"{ARGS_NOT_SERIALIZABLE}: No sets."
