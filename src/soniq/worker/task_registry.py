"""The tasks a worker serves, written to the fleet's task registry.

At start and every ``SONIQ_TASK_REGISTRY_INTERVAL`` seconds the worker upserts one row
per registered task into ``soniq_task_registry`` (name, queue, args model and its JSON
schema), which ``soniq tasks-check`` compares with a stub package. It is observability
only: a failed write is logged and retried at the next interval, never raised.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from soniq.core.registry import JobRegistry, is_builtin_task
from soniq.storage.store import Store
from soniq.worker.stopping import nap

logger = logging.getLogger("soniq.worker")


def model_repr(model: type[BaseModel] | None) -> str | None:
    """An args model's dotted name, as the registry stores it (None without one)."""
    return None if model is None else f"{model.__module__}.{model.__qualname__}"


def model_schema(model: type[BaseModel] | None) -> dict[str, Any] | None:
    """An args model's JSON schema, or None (no model, or one pydantic cannot describe)."""
    if model is None:
        return None
    try:
        return model.model_json_schema()
    except Exception as exc:  # an arbitrary type pydantic has no schema for
        logger.debug("no JSON schema for %s: %s", model_repr(model), exc)
        return None


def registry_rows(registry: JobRegistry) -> str:
    """The rows for ``store.tasks.register``: a JSON array, one object per task.

    Soniq's own tasks (``soniq.*``, such as the webhook delivery job every worker
    serves) are left out: no stub package declares them.
    """
    rows = []
    for name in registry.names():
        spec = registry.get(name)
        if spec is None or is_builtin_task(name):
            continue
        schema = model_schema(spec.args_model)
        rows.append(
            {
                "task_name": name,
                "queue": spec.queue,
                "args_schema": None if schema is None else json.dumps(schema, sort_keys=True),
                "args_model_repr": model_repr(spec.args_model),
            }
        )
    return json.dumps(rows)


class TaskAdvertiser:
    """Keeps this worker's rows of ``soniq_task_registry`` fresh."""

    def __init__(
        self,
        store: Store,
        registry: JobRegistry,
        worker_id: str,
        queues: Sequence[str] | None,
        interval: float,
    ) -> None:
        self.store = store
        self.registry = registry
        self.worker_id = worker_id
        self.queues = None if queues is None else list(queues)
        self.interval = interval
        self.hostname = socket.gethostname()

    async def publish(self) -> bool:
        """Write the rows now; False (after logging why) if that failed."""
        try:
            await self.store.tasks.register(
                self.worker_id, self.hostname, self.queues, registry_rows(self.registry)
            )
        except Exception as exc:  # best effort: the registry must never stop a worker
            first = (str(exc).strip().splitlines() or [""])[0]
            logger.warning(
                "could not write the task registry (%s: %s); retrying in %gs",
                type(exc).__name__,
                first,
                self.interval,
            )
            return False
        return True

    async def run(self, closing: asyncio.Event) -> None:
        """Refresh the rows every interval until ``closing`` (the first write is the
        worker's, at start)."""
        while not closing.is_set():
            await nap(closing, self.interval)
            if not closing.is_set():
                await self.publish()
