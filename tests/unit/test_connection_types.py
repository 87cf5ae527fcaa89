"""``connection=`` objects Soniq cannot write through are refused with advice.

A real psycopg ``Connection`` or ``AsyncConnection`` needs a server, so those cases
live in the integration tests.
"""

from __future__ import annotations

import pytest

from soniq import SoniqError
from soniq.adapters import async_adapter
from soniq.errors import UNSUPPORTED_CONNECTION


class FakeAsyncpgConnection:
    """Looks like it came from asyncpg, but is not one of its connection types."""


FakeAsyncpgConnection.__module__ = "asyncpg.fake"


@pytest.mark.parametrize(
    ("conn", "type_name"),
    [
        (object(), "builtins.object"),
        ("x", "builtins.str"),
        (None, "builtins.NoneType"),
        (FakeAsyncpgConnection(), "asyncpg.fake.FakeAsyncpgConnection"),
    ],
    ids=["object", "str", "None", "fake-asyncpg"],
)
def test_unsupported_connection(conn: object, type_name: str) -> None:
    with pytest.raises(SoniqError) as info:
        async_adapter(conn)
    err = info.value
    assert err.code == UNSUPPORTED_CONNECTION
    assert err.details["connection_type"] == type_name
    assert type_name in err.message
    # It says what to pass instead.
    assert "AsyncConnection" in err.message
    assert "asyncpg" in err.message
