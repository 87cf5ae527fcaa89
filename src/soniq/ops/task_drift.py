"""Comparing a stub package's TaskRefs with what the fleet serves.

The fleet's side is the rows of ``soniq_task_registry`` (``store.tasks.served``): one
per task and worker. For each TaskRef the comparison says whether some worker serves
the name, whether the queue the ref sends to is the one the handler was registered
with and one those workers claim from, and whether the args model's JSON schema is the
one the workers have. Pure functions: the CLI reads the rows and prints the result.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from soniq.enqueue.task_ref import TaskRef
from soniq.worker.task_registry import model_schema

#: The queue a job enqueued through a TaskRef without ``default_queue`` goes to.
DEFAULT_QUEUE = "default"


class Finding(NamedTuple):
    """One TaskRef's comparison: ``state`` is ``ok``, ``missing``, ``queue`` or
    ``schema``; ``detail`` says what differs, for people."""

    task_name: str
    state: str
    queue: str
    workers: int
    detail: str

    @property
    def drift(self) -> bool:
        """Whether this ref and the fleet disagree."""
        return self.state != "ok"


def compare(
    refs: Iterable[TaskRef[Any]], served: Sequence[Mapping[str, Any]], max_age: str
) -> list[Finding]:
    """One :class:`Finding` per ref, by task name. ``max_age`` words the missing case."""
    by_name: dict[str, list[Mapping[str, Any]]] = {}
    for row in served:
        by_name.setdefault(row["task_name"], []).append(row)
    findings = [_compare_one(ref, by_name.get(ref.name, []), max_age) for ref in refs]
    return sorted(findings, key=lambda f: (f.task_name, f.queue))


def unclaimed(refs: Iterable[TaskRef[Any]], served: Sequence[Mapping[str, Any]]) -> list[str]:
    """Task names the fleet serves that no ref declares (not drift: other services'
    stubs, or tasks enqueued by name)."""
    names = {ref.name for ref in refs}
    return sorted({row["task_name"] for row in served} - names)


def _compare_one(ref: TaskRef[Any], rows: list[Mapping[str, Any]], max_age: str) -> Finding:
    queue = ref.default_queue or DEFAULT_QUEUE
    workers = len(rows)
    if not rows:
        return Finding(
            ref.name, "missing", queue, 0, f"no worker has served it in the last {max_age}"
        )
    declared = sorted({row["queue"] for row in rows if row["queue"] not in (None, queue)})
    if declared:
        return Finding(
            ref.name,
            "queue",
            queue,
            workers,
            f"the ref sends it to queue {queue!r}, but workers register it on "
            + ", ".join(repr(q) for q in declared),
        )
    if not any(row["worker_queues"] is None or queue in row["worker_queues"] for row in rows):
        claimed = sorted({q for row in rows for q in row["worker_queues"] or ()})
        return Finding(
            ref.name,
            "queue",
            queue,
            workers,
            f"the ref sends it to queue {queue!r}, but the workers serving it claim only "
            "from " + ", ".join(repr(q) for q in claimed),
        )
    expected = model_schema(ref.args_model)
    if expected is not None:
        stub = _normalised(expected)
        differing = [
            row
            for row in rows
            if row["args_schema"] is not None and _normalised(row["args_schema"]) != stub
        ]
        if differing:
            return Finding(
                ref.name,
                "schema",
                queue,
                workers,
                f"args schema differs on {len(differing)} of {workers} worker(s): "
                f"{_describe(expected)} in the stub, {_describe(differing[0]['args_schema'])} "
                "on the fleet",
            )
    return Finding(ref.name, "ok", queue, workers, f"served by {workers} worker(s)")


def _normalised(schema: Any) -> Any:
    """A schema without its ``title`` keywords (derived from class and field names,
    which may differ between a stub's model and the consumer's copy of it)."""
    if isinstance(schema, str):
        schema = json.loads(schema)
    return _strip_titles(schema)


def _strip_titles(node: Any) -> Any:
    if isinstance(node, list):
        return [_strip_titles(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            # Keys here are field or model names, never keywords: keep each one.
            out[key] = {name: _strip_titles(sub) for name, sub in value.items()}
        else:
            out[key] = _strip_titles(value)
    return out


def _describe(schema: Any) -> str:
    """A schema's fields for a message: ``fields a*, b`` (``*``: required)."""
    if isinstance(schema, str):
        schema = json.loads(schema)
    props = sorted((schema or {}).get("properties", {}))
    required = set((schema or {}).get("required", ()))
    if not props:
        return "no fields"
    return "fields " + ", ".join(name + ("*" if name in required else "") for name in props)
