"""Fixtures of the behaviour suite: one app per test on each of the three storage backends.

Every test in tests/behaviour that asks for ``backend_app`` (or ``make_app``,
``backend_sync_app``, ``make_sync_app``) runs three times, with the ids ``postgres``,
``sqlite`` and ``memory``. Only the public API is used, so a test states what a user
can rely on whatever the storage. The PostgreSQL cases carry the ``integration``
marker like the rest of the database tests; the other two need no server.

A test that holds for some backends only parametrises ``backend`` itself, with
:data:`NOT_POSTGRES` or :data:`ONLY_POSTGRES`; the app fixtures then follow it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

import soniq_sync
from soniq import Soniq

POSTGRES = pytest.param("postgres", id="postgres", marks=pytest.mark.integration)
SQLITE = pytest.param("sqlite", id="sqlite")
MEMORY = pytest.param("memory", id="memory")

BACKENDS = (POSTGRES, SQLITE, MEMORY)
#: For ``@pytest.mark.parametrize("backend", NOT_POSTGRES)``: the lighter backends only.
NOT_POSTGRES = (SQLITE, MEMORY)
#: For ``@pytest.mark.parametrize("backend", ONLY_POSTGRES)``.
ONLY_POSTGRES = (POSTGRES,)

AppT = TypeVar("AppT", Soniq, soniq_sync.Soniq)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The storage backend this test case runs on: postgres, sqlite or memory."""
    name: str = request.param
    return name


@pytest.fixture
def store(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The constructor keywords that point an app at this test's store.

    A plain (not async) fixture: the postgres template database is migrated by the
    pytest plugin with blocking calls, which must not run inside the event loop.
    """
    if backend == "postgres":
        # Asked for lazily, so the sqlite and memory cases never touch PostgreSQL.
        url: str = request.getfixturevalue("database_url")
        return {"database_url": url}
    if backend == "sqlite":
        return {"database_url": f"sqlite:///{tmp_path / 'jobs.db'}"}
    if backend == "memory":
        return {"backend": "memory"}
    raise AssertionError(f"unknown backend {backend!r}")


def _build(cls: type[AppT], backend: str, store: dict[str, str], settings: dict[str, Any]) -> AppT:
    """An app of ``cls`` on ``store``, built the way a user would build it."""
    return cls(**store, **settings)


@pytest.fixture
async def make_app(backend: str, store: dict[str, str]) -> AsyncIterator[Callable[..., Soniq]]:
    """``make_app(**settings)``: a ``soniq.Soniq`` on this test's backend; all closed after.

    On postgres and sqlite every app made in one test shares the same store (database
    or file); each memory app has a store of its own.
    """
    apps: list[Soniq] = []

    def make(**settings: Any) -> Soniq:
        app = _build(Soniq, backend, store, settings)
        apps.append(app)
        return app

    try:
        yield make
    finally:
        for app in reversed(apps):
            await app.close()


@pytest.fixture
async def backend_app(make_app: Callable[..., Soniq]) -> Soniq:
    """A ``soniq.Soniq`` with default settings on this test's backend."""
    return make_app()


@pytest.fixture
def make_sync_app(backend: str, store: dict[str, str]) -> Iterator[Callable[..., soniq_sync.Soniq]]:
    """``make_sync_app(**settings)``: the blocking twin of :func:`make_app`."""
    apps: list[soniq_sync.Soniq] = []

    def make(**settings: Any) -> soniq_sync.Soniq:
        app = _build(soniq_sync.Soniq, backend, store, settings)
        apps.append(app)
        return app

    try:
        yield make
    finally:
        for app in reversed(apps):
            app.close()


@pytest.fixture
def backend_sync_app(make_sync_app: Callable[..., soniq_sync.Soniq]) -> soniq_sync.Soniq:
    """A ``soniq_sync.Soniq`` with default settings on this test's backend."""
    return make_sync_app()
