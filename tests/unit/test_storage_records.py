"""Rows mapped to records by column name, and the dialects' parameter encodings."""

from __future__ import annotations

import json

import pytest

from soniq.storage.dialect import POSTGRES, SQLITE
from soniq.storage.records import ClaimedJob, Promoted, records

JOB = ("j1", "app.task", {"a": 1}, "default", 100, 2, 3, None, None, None, "g:1")


def test_rows_in_field_order_become_records() -> None:
    (job,) = records(ClaimedJob, ClaimedJob._fields, [JOB])
    assert job == ClaimedJob(*JOB) and job.attempt == 2


def test_rows_map_by_column_name_whatever_the_order() -> None:
    columns = (*reversed(ClaimedJob._fields), "extra")
    (job,) = records(ClaimedJob, columns, [(*reversed(JOB), "ignored")])
    assert job == ClaimedJob(*JOB)


def test_a_one_field_record_and_a_scalar_row() -> None:
    (promoted,) = records(Promoted, ("next_due", "woke", "moved"), [(1.5, 1, 4)])
    assert promoted == Promoted(moved=4, woke=1, next_due=1.5)


def test_a_missing_column_names_it() -> None:
    with pytest.raises(LookupError, match=r"needs columns \['woke'\]"):
        records(Promoted, ("moved", "next_due"), [(1, None)])


BATCH = [
    ("00000000-0000-4000-8000-000000000001", 1, '{"r": [1, 2]}'),
    ("00000000-0000-4000-8000-000000000002", 3, None),
]


def test_postgres_encodes_array_literals_and_a_json_array() -> None:
    assert POSTGRES.completions(BATCH) == {
        "ids": "{00000000-0000-4000-8000-000000000001,00000000-0000-4000-8000-000000000002}",
        "attempts": "{1,3}",
        "results": '[{"r": [1, 2]},null]',
    }


def test_sqlite_encodes_three_json_arrays() -> None:
    encoded = SQLITE.completions(BATCH)
    assert json.loads(encoded["ids"]) == [b[0] for b in BATCH]
    assert json.loads(encoded["attempts"]) == [1, 3]
    assert json.loads(encoded["results"]) == [{"r": [1, 2]}, None]


def test_each_dialect_has_every_query_the_store_runs() -> None:
    shared = {"claim_jobs", "complete_jobs", "retry_job", "promote_due_jobs", "queue_gauges"}
    assert shared <= set(POSTGRES.queries) and shared <= set(SQLITE.queries)
    assert "listen" in POSTGRES.queries and "listen" not in SQLITE.queries
