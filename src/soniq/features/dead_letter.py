"""The dead-letter queue under the original's import path (the code is in soniq.ops).

``DeadLetterService`` is the class behind ``app.dead_letter``; ``DeadLetterFilter``
selects dead letters for the bulk calls. ``DeadLetterJob`` and ``DeadLetterStats`` name
the plain dicts the service returns. The original's ``DeadLetterReason`` enum has no
counterpart: Soniq's ``reason`` column holds a sentence that says what happened.
"""

from __future__ import annotations

from typing import Any

from soniq.ops.dead_letter import DeadLetterQueue
from soniq.ops.filters import DeadLetterFilter

__all__ = [
    "DeadLetterFilter",
    "DeadLetterJob",
    "DeadLetterQueue",
    "DeadLetterService",
    "DeadLetterStats",
]

#: The service behind ``app.dead_letter`` (the original's name for it).
DeadLetterService = DeadLetterQueue
#: A dead letter as ``app.dead_letter.get()`` and ``list()`` return it: a dict.
DeadLetterJob = dict[str, Any]
#: What ``app.dead_letter.stats()`` returns: a dict of counts.
DeadLetterStats = dict[str, Any]
