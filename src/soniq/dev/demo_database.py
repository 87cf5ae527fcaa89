"""A database of its own for ``soniq demo`` on a server the user named.

The demo never writes to the user's Soniq database: their workers (which may serve
every queue) would pick up its jobs and dead-letter them as unknown. It creates
``soniq_demo_<hex>`` next to it, sets it up, and drops it at the end, even after an
error or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator

from soniq.errors import DEMO_DATABASE_UNAVAILABLE, SoniqError
from soniq.settings import SoniqSettings
from soniq.storage import admin
from soniq.storage.urls import describe_server, make_conninfo, normalise_database_url

logger = logging.getLogger("soniq.demo")


@contextlib.asynccontextmanager
async def demo_database(server_url: str) -> AsyncIterator[str]:
    """Create a scratch database on ``server_url``'s server; yield its URL; drop it."""
    server_url = normalise_database_url(server_url)
    settings = SoniqSettings.load(database_url=server_url)
    name = f"soniq_demo_{uuid.uuid4().hex[:12]}"
    try:
        # template1 is what a plain CREATE DATABASE copies.
        await admin.create_database_async(server_url, settings, name, "template1")
    except admin.ERRORS as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SoniqError(
            DEMO_DATABASE_UNAVAILABLE,
            f"The demo runs in a scratch database of its own, but creating one on "
            f"{describe_server(server_url)} failed ({reason}). Grant the user CREATEDB, "
            "or unset SONIQ_DATABASE_URL to use the embedded server "
            "(pip install 'soniq[embedded]').",
            server=describe_server(server_url),
        ) from None
    logger.info("created demo database", extra={"database": name})
    try:
        yield make_conninfo(server_url, dbname=name)
    finally:
        await admin.drop_database_async(server_url, settings, name)
        logger.info("dropped demo database", extra={"database": name})
