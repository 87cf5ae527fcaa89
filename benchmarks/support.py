"""What both benchmark scripts share: scratch databases, option checks, machine load."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import conninfo, sql


def url_for(url: str, dbname: str) -> str:
    """``url`` pointed at another database on the same server."""
    if "://" not in url:  # key=value conninfo
        return conninfo.make_conninfo(url, dbname=dbname)
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + dbname))


class Scratch:
    """Scratch databases created on demand and all dropped by :meth:`drop_all`."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.names: list[str] = []

    async def create(self) -> str:
        """Create ``soniq_bench_<random>`` and return its URL."""
        name = f"soniq_bench_{secrets.token_hex(4)}"
        async with await psycopg.AsyncConnection.connect(self.admin_url, autocommit=True) as conn:
            await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.names.append(name)
        print(f"scratch database {name}", flush=True)
        return url_for(self.admin_url, name)

    async def drop_all(self) -> None:
        """Drop every database :meth:`create` made, even with clients still connected."""
        async with await psycopg.AsyncConnection.connect(self.admin_url, autocommit=True) as conn:
            for name in self.names:
                ident = sql.Identifier(name)
                try:
                    await conn.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident)
                    )
                except psycopg.errors.SyntaxError:  # PostgreSQL < 13
                    await conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(ident))
                print(f"dropped scratch database {name}", flush=True)
        self.names.clear()


def positive(text: str) -> int:
    """argparse type: an int >= 1 (underscores allowed, as in 50_000)."""
    value = int(text.replace("_", ""))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages, for the report."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def run_timed(main_async: Coroutine[Any, Any, int]) -> int:
    """A script's exit status: run ``main_async``, report Ctrl-C, print the total time.

    Scratch databases are dropped by ``main_async``'s own ``finally`` before this
    returns, interrupted or not.
    """
    started = time.perf_counter()
    try:
        code = asyncio.run(main_async)
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted", file=sys.stderr)
        return 130
    print(f"total {time.perf_counter() - started:.1f} s, load average now {loadavg()}")
    return code
