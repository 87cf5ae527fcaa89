"""The named-query loader: splitting a file into queries, and fragment includes."""

from __future__ import annotations

import pytest

from soniq.storage.queries import QUERIES, load_queries


def test_a_file_splits_into_named_queries_without_their_comments() -> None:
    queries = load_queries("-- name: one\n-- why\nSELECT 1\n\n-- name: two\nSELECT 2\n")
    assert {name: q.text for name, q in queries.items()} == {"one": "SELECT 1", "two": "SELECT 2"}


def test_an_include_line_stands_for_the_fragment() -> None:
    text = (
        "-- name: _filter\n-- a fragment\n(a = %(a)s)\n  AND (b = %(b)s)\n\n"
        "-- name: count\nSELECT count(*) FROM t WHERE\n  -- include: _filter\n\n"
        "-- name: purge\nDELETE FROM t WHERE x AND\n-- include: _filter\n"
    )
    queries = load_queries(text)
    assert set(queries) == {"count", "purge"}  # a fragment is not a query
    assert queries["count"].text == "SELECT count(*) FROM t WHERE\n(a = %(a)s)\n  AND (b = %(b)s)"
    assert queries["purge"].param_names == ("a", "b")


def test_an_unknown_include_fails_at_load_naming_both() -> None:
    with pytest.raises(ValueError, match="query count includes _missing, which is not defined"):
        load_queries("-- name: count\nSELECT 1 WHERE\n-- include: _missing\n")


def test_a_fragment_cannot_include_another() -> None:
    with pytest.raises(ValueError, match="fragment _outer includes _inner"):
        load_queries("-- name: _inner\nx\n\n-- name: _outer\n-- include: _inner\n")


def test_the_dead_letter_queries_share_one_filter() -> None:
    filtered = [
        "dead_letter_list",
        "dead_letter_count",
        "dead_letter_page",
        "dead_letter_replay_batch",
        "dead_letter_purge",
    ]
    for name in filtered:
        assert "-- include" not in QUERIES[name].text
        assert {"job_name", "queue", "reason", "since", "until"} <= set(QUERIES[name].param_names)
