"""Claim sizing: free slots plus a few jobs held ready, claimed in worthwhile batches.

Fed claim round trips and finished jobs on a clock the test moves by hand.
"""

from __future__ import annotations

from soniq.worker.claim_ahead import ClaimAhead


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def claim(sizing: ClaimAhead, clock: Clock, asked: int, got: int, seconds: float) -> None:
    sizing.claim_started()
    clock.now += seconds
    sizing.claim_ended(asked, got)


def test_a_fresh_worker_claims_its_free_slots_and_holds_none_ready() -> None:
    sizing = ClaimAhead(8, Clock())
    assert sizing.ahead() == 0
    assert sizing.size(held=0) == 8
    assert sizing.size(held=5) == 3
    assert sizing.size(held=8) == 0  # every slot busy: wait


def test_a_backlog_waits_for_a_quarter_of_the_slots() -> None:
    clock = Clock()
    sizing = ClaimAhead(16, clock)
    claim(sizing, clock, asked=16, got=16, seconds=0.0)  # got all it asked: more wait
    assert sizing.backlog and sizing.threshold == 4
    assert sizing.size(held=13) == 0  # 3 free slots: not worth a claim yet
    assert sizing.size(held=12) == 4
    claim(sizing, clock, asked=4, got=1, seconds=0.0)  # the queue ran dry
    assert not sizing.backlog and sizing.threshold == 1
    assert sizing.size(held=15) == 1


def test_a_small_worker_claims_as_soon_as_one_slot_is_free() -> None:
    clock = Clock()
    sizing = ClaimAhead(2, clock)
    claim(sizing, clock, asked=2, got=2, seconds=0.0)
    assert sizing.threshold == 1
    assert sizing.size(held=1) == 1


def test_fast_jobs_are_claimed_ahead_for_two_round_trips() -> None:
    clock = Clock()
    sizing = ClaimAhead(10, clock)
    claim(sizing, clock, asked=10, got=10, seconds=0.02)  # sets the rate's first mark
    for _ in range(3):  # 100 jobs a second finish; each claim takes 20 ms
        for _ in range(10):
            sizing.finished()
        clock.now += 0.08
        claim(sizing, clock, asked=10, got=10, seconds=0.02)
    # Smoothed towards 100 jobs/s and 20 ms: about 4 jobs finish in two round trips.
    assert 2 <= sizing.ahead() <= 4
    assert sizing.size(held=0) == 10 + sizing.ahead()


def test_jobs_held_ahead_are_at_most_twice_the_concurrency() -> None:
    clock = Clock()
    sizing = ClaimAhead(3, clock)
    claim(sizing, clock, asked=3, got=3, seconds=0.5)
    for _ in range(5):
        for _ in range(1000):
            sizing.finished()
        claim(sizing, clock, asked=3, got=3, seconds=0.5)
    assert sizing.ahead() == 6
    assert sizing.size(held=0) == 9


def test_long_jobs_are_not_claimed_ahead() -> None:
    clock = Clock()
    sizing = ClaimAhead(4, clock)
    for _ in range(5):  # one job a minute, 10 ms claims
        clock.now += 60.0
        sizing.finished()
        claim(sizing, clock, asked=1, got=1, seconds=0.01)
    assert sizing.ahead() == 0


def test_claims_closer_than_the_rate_span_keep_the_rate() -> None:
    clock = Clock()
    sizing = ClaimAhead(10, clock)
    claim(sizing, clock, asked=10, got=10, seconds=0.001)
    for _ in range(10):
        sizing.finished()
    claim(sizing, clock, asked=10, got=10, seconds=0.001)  # 2 ms after the mark
    assert sizing.ahead() == 0  # no rate measured over so short a span


def test_a_cap_limits_the_claim_and_lets_the_last_small_one_through() -> None:
    clock = Clock()
    sizing = ClaimAhead(16, clock)
    assert sizing.size(held=0, cap=17) == 16
    claim(sizing, clock, asked=16, got=16, seconds=0.0)
    assert sizing.size(held=15, cap=1) == 0  # the cap allows 1, but no slot is free
    assert sizing.size(held=4, cap=1) == 1  # below the backlog's threshold of 4: still
    assert sizing.size(held=0, cap=0) == 0  # the cap reached


def test_a_failed_claim_ends_the_backlog() -> None:
    clock = Clock()
    sizing = ClaimAhead(8, clock)
    claim(sizing, clock, asked=8, got=8, seconds=0.0)
    sizing.claim_failed()
    assert not sizing.backlog and sizing.size(held=7) == 1
