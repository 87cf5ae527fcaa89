"""How many jobs a worker claims, and when: its free slots, plus a few held ready.

Pure bookkeeping (no I/O, no event loop): the worker reports its claims and the jobs
that finish, and asks :meth:`ClaimAhead.size` before each claim.
"""

from __future__ import annotations

from collections.abc import Callable

#: The shortest span (seconds) over which the finishing rate is measured.
_RATE_SPAN = 0.01


class ClaimAhead:
    """Sizes the claims of a worker with ``concurrency`` slots.

    A claim asks for the free slots plus the jobs to hold ready (:meth:`ahead`), and is
    made only once enough slots are free (:attr:`threshold`). ``clock`` gives the time
    in seconds (the event loop's clock, in the worker).
    """

    __slots__ = (
        "_claim_seconds",
        "_clock",
        "_finished",
        "_rate",
        "_rate_mark",
        "_started",
        "backlog",
        "concurrency",
        "refill_at",
    )

    def __init__(self, concurrency: int, clock: Callable[[], float]) -> None:
        self.concurrency = concurrency
        #: While jobs are waiting, claim only once this many slots are free: one claim
        #: of 16 rows costs about what a claim of 1 does.
        self.refill_at = max(1, concurrency // 4)
        #: Did the last claim get every row it asked for (so more are likely waiting)?
        self.backlog = False
        self._clock = clock
        self._started = 0.0
        self._finished = 0
        # The claim round trip, and the rate at which slots free up (jobs per second,
        # measured since the mark: a time and the finished count then), both smoothed
        # over recent claims.
        self._claim_seconds = 0.0
        self._rate = 0.0
        self._rate_mark = (0.0, 0)

    @property
    def threshold(self) -> int:
        """The smallest claim worth making now."""
        return self.refill_at if self.backlog else 1

    def ahead(self) -> int:
        """Jobs to claim beyond the free slots, to be started as slots free up.

        About the number of jobs the worker finishes during two claim round trips, at
        most twice the concurrency: then short jobs never leave slots idle while a
        claim is in flight, and long jobs (which free few slots per round trip) are not
        claimed before a slot is free, where another worker might run them sooner.
        """
        return min(2 * self.concurrency, int(self._rate * self._claim_seconds * 2.0))

    def size(self, held: int, cap: int | None = None) -> int:
        """How many jobs to claim now, while the worker holds ``held`` (running or
        ready); 0: wait for slots to free up.

        ``cap`` is the most the caller may still claim (``run_once``'s ``max_jobs``); a
        capped claim is made as soon as it can reach the cap, however small.
        """
        want = self.concurrency + self.ahead() - held
        least = self.threshold
        if cap is not None and cap < want:
            want, least = cap, min(least, cap)
        return want if want >= max(least, 1) else 0

    def finished(self) -> None:
        """One job the worker held has finished (its slot is free)."""
        self._finished += 1

    def claim_started(self) -> None:
        """A claim goes to the database now."""
        self._started = self._clock()

    def claim_ended(self, asked: int, got: int, more: bool | None = None) -> None:
        """The claim came back with ``got`` of the ``asked`` rows; ``more``: whether
        more are likely waiting (default: it got all it asked for)."""
        now = self._clock()
        self.backlog = got == asked if more is None else more
        self._claim_seconds = (self._claim_seconds + (now - self._started)) / 2.0
        since, count = self._rate_mark
        if now - since >= _RATE_SPAN:
            rate = (self._finished - count) / (now - since)
            self._rate = (self._rate + rate) / 2.0
            self._rate_mark = (now, self._finished)

    def claim_failed(self) -> None:
        """The claim got nothing (the database was unavailable)."""
        self.backlog = False
