"""``soniq scheduler``: the process that turns recurring schedules into jobs.

The worker never evaluates schedules; run one or more schedulers next to the workers
(one leads at a time). See :class:`SchedulerProcess`.
"""

from __future__ import annotations

from soniq.app_base import INSTANCES
from soniq.errors import DUPLICATE_TASK_NAME, SoniqError
from soniq.recurring.process import LEADER_LOCK_KEY, SchedulerProcess
from soniq.recurring.recurrence import PeriodicJob

__all__ = ["LEADER_LOCK_KEY", "SchedulerProcess", "declared_periodic_jobs"]


def declared_periodic_jobs() -> list[PeriodicJob]:
    """The ``@app.periodic`` declarations of every app in this process, by name.

    The same name declared twice with different schedules is SONIQ_DUPLICATE_TASK_NAME.
    """
    found: dict[str, PeriodicJob] = {}
    for _, app in sorted(INSTANCES.items()):
        for name, decl in app.periodic_jobs.items():
            seen = found.get(name)
            if seen is not None and seen != decl:
                raise SoniqError(
                    DUPLICATE_TASK_NAME,
                    f"Periodic job {name!r} is declared twice with different schedules "
                    f"({seen.rule.describe()} and {decl.rule.describe()}). Keep one.",
                    task_name=name,
                )
            found[name] = decl
    return [found[name] for name in sorted(found)]
