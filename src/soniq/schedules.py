"""Re-export: the schedule DSL's public path. The code is in ``soniq.recurring.schedules``."""

from soniq.recurring.schedules import *  # noqa: F403
from soniq.recurring.schedules import __all__ as __all__
