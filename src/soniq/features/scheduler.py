"""The recurring-job scheduler under the original's import path (code: soniq.recurring).

``Scheduler`` is the class behind ``app.scheduler``.
"""

from soniq.recurring.service import Scheduler

__all__ = ["Scheduler"]
