"""Receivers of the tasks framework's worker signals, recording each into SignalRecord.

Connected by the app config, so they run in `soniq worker` (which sets the project up)
as Django's own receivers do.
"""

from __future__ import annotations

import sys
from typing import Any

from tests.django_project.testapp.models import SignalRecord

try:
    from django.tasks import TaskResultStatus
    from django.tasks.signals import task_finished, task_started
except ImportError:
    from django_tasks import TaskResultStatus
    from django_tasks.signals import task_finished, task_started


def _record(signal: str, sender: Any, task_result: Any) -> None:
    SignalRecord.objects.create(
        signal=signal,
        sender=f"{sender.__module__}.{sender.__qualname__}",
        task_id=task_result.id,
        status=task_result.status,
        enqueued_at=task_result.enqueued_at,
        started_at=task_result.started_at,
        last_attempted_at=task_result.last_attempted_at,
        finished_at=task_result.finished_at,
        attempts=task_result.attempts,
        errors=[e.exception_class_path for e in task_result.errors],
        return_value=(
            task_result.return_value if task_result.status == TaskResultStatus.SUCCESSFUL else None
        ),
        in_exception=sys.exc_info()[0] is not None,
    )


def on_started(sender: Any, task_result: Any, **kwargs: Any) -> None:
    _record("started", sender, task_result)


def on_finished(sender: Any, task_result: Any, **kwargs: Any) -> None:
    _record("finished", sender, task_result)


def connect() -> None:
    task_started.connect(on_started, dispatch_uid="testapp.started")
    task_finished.connect(on_finished, dispatch_uid="testapp.finished")
