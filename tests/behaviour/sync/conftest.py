"""Fixtures of the behaviour suite's blocking side.

The modules here are generated from the async ones in tests/behaviour by
``tools/async_to_sync.py`` and ask for the same fixtures by the same names; here
those names give ``soniq_sync.Soniq`` apps, on the same three backends.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

import soniq_sync


@pytest.fixture
def make_app(make_sync_app: Callable[..., soniq_sync.Soniq]) -> Callable[..., soniq_sync.Soniq]:
    """``make_app(**settings)``: a ``soniq_sync.Soniq`` on this test's backend."""
    return make_sync_app


@pytest.fixture
def backend_app(backend_sync_app: soniq_sync.Soniq) -> soniq_sync.Soniq:
    """A ``soniq_sync.Soniq`` with default settings on this test's backend."""
    return backend_sync_app
