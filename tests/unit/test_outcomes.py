"""The one rule for a failed attempt: retry while attempts are left, else bury."""

from __future__ import annotations

from soniq.worker.outcomes import Bury, Retry, failure_outcome


def test_a_failure_with_attempts_left_is_retried_after_the_delay() -> None:
    outcome = failure_outcome(1, 3, "ValueError: x", delay=2.5, reason="gave up", trace="tb")
    assert outcome == Retry(2.5, "ValueError: x")


def test_the_last_attempt_buries_the_job_with_reason_error_and_trace() -> None:
    outcome = failure_outcome(3, 3, "ValueError: x", delay=2.5, reason="gave up", trace="tb")
    assert outcome == Bury("gave up", "ValueError: x", "tb")


def test_an_attempt_past_the_maximum_is_buried_too() -> None:
    # A job whose max_attempts was lowered while it ran, say.
    assert isinstance(failure_outcome(5, 3, "e", delay=0.0, reason="r"), Bury)


def test_a_single_attempt_job_is_buried_at_once_without_a_trace() -> None:
    assert failure_outcome(1, 1, "e", delay=9.0, reason="r") == Bury("r", "e", None)
