"""The database fixtures themselves: clones carry the schema and are private to a test."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import conninfo

from soniq.testing.pytest_plugin import TestServer

SONIQ_JOBS_EXISTS = (
    "SELECT count(*) FROM information_schema.tables "
    "WHERE table_schema = current_schema() AND table_name = 'soniq_jobs'"
)

_seen_databases: set[str] = set()


async def test_cloned_database_has_soniq_schema(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(SONIQ_JOBS_EXISTS)
        assert await cur.fetchone() == (1,)


@pytest.mark.parametrize("run", [1, 2])
def test_each_test_gets_its_own_database(database_url: str, run: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT current_database()").fetchone()
        assert row is not None
        assert row[0] not in _seen_databases
        _seen_databases.add(row[0])
        # Fails if another test's writes had leaked into the template.
        conn.execute("CREATE TABLE harness_probe (id int)")


def test_empty_database_has_no_soniq_schema(empty_database_url: str) -> None:
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute(SONIQ_JOBS_EXISTS).fetchone() == (0,)


def test_a_temporary_database_is_a_copy_of_its_template_and_is_dropped(
    pg_server: TestServer, soniq_test_template: str
) -> None:
    with pg_server.temporary_database(template=soniq_test_template, prefix="soniq_tmp_") as url:
        name = conninfo.conninfo_to_dict(url)["dbname"]
        assert isinstance(name, str) and name.startswith("soniq_tmp_")
        with psycopg.connect(url) as conn:
            assert conn.execute(SONIQ_JOBS_EXISTS).fetchone() == (1,)
    with psycopg.connect(pg_server.url) as conn:
        left = conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", [name])
        assert left.fetchone() == (0,)
