"""Recurring jobs: the schedule DSL, recurrence rules, ``app.scheduler`` and the
``soniq scheduler`` process that turns schedules into jobs."""
