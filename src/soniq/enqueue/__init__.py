"""Turning an enqueue call into checked job rows: plans, ids, task names, TaskRefs."""
