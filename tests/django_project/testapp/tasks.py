"""Django tasks (the backport's @task; Django 6's is the same) run by the Soniq backend."""

from __future__ import annotations

from typing import Any

try:
    from django.tasks import task
except ImportError:
    from django_tasks import task

from tests.django_project.testapp.models import Order


@task()
def add(a: int, b: int, *, scale: int = 1) -> int:
    return (a + b) * scale


@task(takes_context=True)
def whoami(context: Any, label: str) -> dict[str, Any]:
    return {"label": label, "attempt": context.attempt, "id": context.task_result.id}


@task()
def fail(message: str) -> None:
    raise ValueError(message)


@task()
async def async_echo(value: Any) -> Any:
    return value


@task(queue_name="other", priority=50)
def create_order(ref: str) -> int:
    return int(Order.objects.create(ref=ref).pk)


@task()
def returns_object() -> object:
    return object()


@task(backend="retrying", takes_context=True)
def flaky(context: Any, failures: int) -> str:
    """Fails its first ``failures`` attempts (two are allowed), then succeeds."""
    if context.attempt <= failures:
        raise ValueError(f"attempt {context.attempt} failed")
    return f"ok on attempt {context.attempt}"
