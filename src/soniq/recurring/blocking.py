"""``app.scheduler.start()`` of a blocking ``soniq_sync`` app: refused with a way out.

The in-process scheduler is a task on an event loop (``soniq.recurring.in_process``);
a blocking app has none, so it fires its schedules through ``soniq scheduler``.
"""

from __future__ import annotations

from soniq.errors import SCHEDULER_ASYNC_ONLY, SoniqError

__all__ = ["NoInProcessScheduler"]


class NoInProcessScheduler:
    """A runner whose ``start`` raises SONIQ_SCHEDULER_ASYNC_ONLY; ``stop`` does nothing."""

    running = False

    def start(self, check_interval: float | None) -> None:
        """Refuse, saying what to run instead."""
        raise SoniqError(
            SCHEDULER_ASYNC_ONLY,
            "app.scheduler.start() runs on an event loop, so only a soniq.Soniq app has "
            "it. Run `soniq scheduler` next to your workers (it fires the schedules "
            "app.scheduler.add() stores and your @app.periodic jobs), or use a soniq.Soniq "
            "app inside asyncio.",
        )

    def stop(self) -> None:
        """Nothing was started."""
