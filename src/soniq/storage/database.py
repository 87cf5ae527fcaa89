"""The database a PostgreSQL URL names: whether Soniq may create it, and how to.

``app.setup()`` creates a missing database (the CLI's ``soniq setup`` tells how
instead); both need its name, the server's maintenance database to connect to
meanwhile, and a message with the exact command. No I/O here.
"""

from __future__ import annotations

import re
import shlex

from psycopg import conninfo

from soniq.errors import DATABASE_MISSING, INVALID_DATABASE_NAME, SoniqError

#: What ``setup()`` agrees to create: a plain identifier, as PostgreSQL folds none of it
#: and it needs no quoting anywhere (63 bytes is PostgreSQL's limit for a name).
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

#: The database every PostgreSQL server has, to connect to while the target is missing.
MAINTENANCE_DATABASE = "postgres"


def database_name(url: str) -> str | None:
    """The database ``url`` names, or None when it leaves it to libpq's default."""
    name = conninfo.conninfo_to_dict(url).get("dbname")
    return str(name) if name else None


def maintenance_url(url: str) -> str:
    """``url`` with the maintenance database in place of its own."""
    return conninfo.make_conninfo(url, dbname=MAINTENANCE_DATABASE)


def check_database_name(name: str) -> str:
    """``name`` if ``setup()`` may create it, else SONIQ_INVALID_DATABASE_NAME."""
    if not _PLAIN_NAME.fullmatch(name):
        raise SoniqError(
            INVALID_DATABASE_NAME,
            f"Database {name!r} does not exist, and setup() creates only databases whose "
            "name is a plain identifier (letters, digits and _, not starting with a digit, "
            "at most 63). Create it yourself (" + _how(name, quote=True) + "), or pick "
            "such a name in SONIQ_DATABASE_URL.",
            database=name,
        )
    return name


def database_missing(url: str, name: str) -> SoniqError:
    """SONIQ_DATABASE_MISSING for ``soniq setup``: the exact commands that create it."""
    params = conninfo.conninfo_to_dict(url)
    command = ["createdb"]
    for flag, key in (("-h", "host"), ("-p", "port"), ("-U", "user")):
        if params.get(key):
            command += [flag, str(params[key])]
    command.append(name)
    return SoniqError(
        DATABASE_MISSING,
        f"Database {name!r} does not exist on the server. Create it, then run "
        f"`soniq setup` again: `{shlex.join(command)}`, or in psql: "
        f"{_how(name, quote=not _PLAIN_NAME.fullmatch(name))}. (`soniq setup` never "
        "creates databases; `await app.setup()` does, for plain names.)",
        database=name,
    )


def _how(name: str, *, quote: bool) -> str:
    shown = '"' + name.replace('"', '""') + '"' if quote else name
    return f"CREATE DATABASE {shown};"
