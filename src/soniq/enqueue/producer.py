"""Who enqueued a job: the ``producer_id`` stamped on every row.

SONIQ_PRODUCER_ID when set, else ``<hostname>:<pid>`` of this process. The default is
worked out once per process (and again in a forked child, whose pid differs), so an
enqueue only reads a cached string.
"""

from __future__ import annotations

import os
import socket

_process_id: str | None = None


def process_producer_id() -> str:
    """``<hostname>:<pid>`` of this process, cached."""
    global _process_id
    if _process_id is None:
        _process_id = f"{socket.gethostname()}:{os.getpid()}"
    return _process_id


def _forget() -> None:
    global _process_id
    _process_id = None


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_forget)
