"""Checking a PostgreSQL URL and describing it in messages without the password."""

from __future__ import annotations

import psycopg
from psycopg import conninfo

from soniq.errors import DATABASE_URL_MISSING, INVALID_DATABASE_URL, SoniqError
from soniq.settings import SoniqSettings

_SCHEMES = ("postgresql://", "postgres://")


def normalise_database_url(url: object) -> str:
    """Check that ``url`` is a PostgreSQL URL or conninfo string; return it for libpq.

    SQLAlchemy spellings such as ``postgresql+asyncpg://`` are accepted and reduced to
    plain ``postgresql://``.
    """
    if not isinstance(url, str) or not url.strip():
        raise SoniqError(
            INVALID_DATABASE_URL,
            f"The database URL must be a non-empty string, got {url!r}.",
        )
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if sep and "+" in scheme and scheme.split("+")[0] in ("postgresql", "postgres"):
        url = f"postgresql://{rest}"
    elif sep and not url.startswith(_SCHEMES):
        raise SoniqError(
            INVALID_DATABASE_URL,
            f"Database URL scheme {scheme + '://'!r} is not PostgreSQL. Use "
            "postgresql://user:password@host:5432/dbname.",
        )
    try:
        parts = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise SoniqError(
            INVALID_DATABASE_URL,
            f"The database URL does not parse ({str(exc).strip()}). Use "
            "postgresql://user:password@host:5432/dbname.",
        ) from None
    port = str(parts.get("port") or "5432")
    if not all(p.strip().isdigit() for p in port.split(",")):
        raise SoniqError(
            INVALID_DATABASE_URL,
            f"The database URL's port {port!r} is not a number. Use "
            "postgresql://user:password@host:5432/dbname.",
        )
    return url


def describe_server(url: str) -> str:
    """``host:port/dbname`` of a URL, for error messages (never the password)."""
    parts = conninfo.conninfo_to_dict(url)
    host = str(parts.get("host") or "localhost (default socket)")
    port = str(parts.get("port") or "5432")
    return f"{host}:{port}/{parts.get('dbname') or '(default database)'}"


def require_url(settings: SoniqSettings) -> str:
    """The configured URL, or a SoniqError that says how to give one."""
    if settings.database_url is None:
        raise SoniqError(
            DATABASE_URL_MISSING,
            "No database URL: set SONIQ_DATABASE_URL (or pass Soniq(database_url=...)), "
            "or run `soniq dev` for a local PostgreSQL that prints the URL to export.",
        )
    return normalise_database_url(settings.database_url)
