"""soniq.observability.log_context: the running job's fields on log records, and JSON lines."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from typing import Any

import pytest

from soniq.observability.log_context import (
    CURRENT_JOB,
    JobLogFilter,
    JsonLogFormatter,
    current_job_fields,
)


class FakeJob:
    def log_extra(self) -> dict[str, Any]:
        return {"job_id": "j-1", "job_name": "billing.charge", "queue": "money", "attempt": 2}


def record(msg: str = "hello %s", *args: object, **extra: Any) -> logging.LogRecord:
    rec = logging.LogRecord("user.code", logging.INFO, __file__, 1, msg, args or ("x",), None)
    rec.__dict__.update(extra)
    return rec


def in_job(fn: Any) -> Any:
    """Run ``fn`` in a context where FakeJob is the running job (as the worker does)."""

    def inside() -> Any:
        CURRENT_JOB.set(FakeJob())
        return fn()

    return contextvars.copy_context().run(inside)


def test_outside_a_job_the_filter_adds_nothing_and_keeps_the_record() -> None:
    rec = record()
    assert JobLogFilter().filter(rec) is True
    assert not hasattr(rec, "job_id")
    assert current_job_fields() == {}


def test_inside_a_job_the_filter_adds_the_four_fields() -> None:
    rec = record()
    assert in_job(lambda: JobLogFilter().filter(rec)) is True
    fields = {k: getattr(rec, k) for k in ("job_id", "job_name", "queue", "attempt")}
    assert fields == {"job_id": "j-1", "job_name": "billing.charge", "queue": "money", "attempt": 2}


def test_fields_passed_with_extra_win() -> None:
    rec = record(queue="explicit")
    in_job(lambda: JobLogFilter().filter(rec))
    assert rec.queue == "explicit"  # type: ignore[attr-defined]
    assert rec.job_id == "j-1"  # type: ignore[attr-defined]


def test_json_lines_carry_message_level_logger_and_extras() -> None:
    rec = record("charged %d cents", 250, order_id=7, when=object())
    line = JsonLogFormatter().format(rec)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "charged 250 cents"
    assert (entry["level"], entry["logger"], entry["order_id"]) == ("INFO", "user.code", 7)
    assert entry["time"].endswith("+00:00")
    assert entry["when"].startswith("<object object")  # not JSON: written as str()
    assert "job_id" not in entry and "args" not in entry and "msg" not in entry


def test_json_lines_include_the_running_job_even_without_the_filter() -> None:
    entry = json.loads(in_job(lambda: JsonLogFormatter().format(record())))
    assert {k: entry[k] for k in ("job_id", "job_name", "queue", "attempt")} == {
        "job_id": "j-1",
        "job_name": "billing.charge",
        "queue": "money",
        "attempt": 2,
    }


def test_json_lines_include_the_traceback() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    entry = json.loads(JsonLogFormatter().format(rec))
    assert "RuntimeError: boom" in entry["exception"]
    assert entry["message"] == "failed"


@pytest.mark.parametrize("value", ["ünïcode", "line\nbreak"])
def test_json_lines_stay_one_line(value: str) -> None:
    line = JsonLogFormatter().format(record("%s", value))
    assert "\n" not in line and json.loads(line)["message"] == value
