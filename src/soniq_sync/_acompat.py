"""The blocking twins of :mod:`soniq._acompat`: the same names, for threads.

Hand-written. The generated modules import their primitives from here, where the
async source imports them from :mod:`soniq._acompat`.
"""

from __future__ import annotations

import threading

__all__ = ["Lock"]

#: A mutual-exclusion lock shared by threads (``with lock:``).
Lock = threading.Lock
