"""Checking a database URL, telling which backend it names, and describing it in
messages without the password."""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import conninfo, pq

from soniq.errors import (
    DATABASE_URL_MISSING,
    INVALID_DATABASE_URL,
    INVALID_SETTING,
    SoniqError,
    SoniqValueError,
)
from soniq.settings import SoniqSettings, StorageKind

_SCHEMES = ("postgresql://", "postgres://")
#: A plain path with one of these endings names a SQLite file.
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_SQLITE_SCHEME = "sqlite://"
# "sqlite:x.db", "file:x.db": a scheme, not a folder (two letters or more, so that a
# Windows drive such as "C:" stays a path).
_SCHEME_LIKE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")
_SQLITE_FORMS = "sqlite:///relative/path.db, sqlite:////absolute/path.db or a path ending .db"


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


def make_conninfo(base: str, **params: str) -> str:
    """``base`` (a URL or conninfo string, maybe empty) with ``params`` set."""
    return conninfo.make_conninfo(base, **params)


def conninfo_params(url: str) -> dict[str, Any]:
    """The connection parameters of a URL or conninfo string, by libpq keyword."""
    return conninfo.conninfo_to_dict(url)


def libpq_keywords() -> frozenset[str]:
    """Every connection keyword this libpq knows (``sslmode``, ``options`` ...)."""
    return frozenset(option.keyword.decode() for option in pq.Conninfo.get_defaults())


def url_for_database(url: str, dbname: str) -> str:
    """``url`` pointed at database ``dbname`` on the same server (URL or conninfo)."""
    if "://" not in url:  # key=value conninfo
        return conninfo.make_conninfo(url, dbname=dbname)
    return urlunsplit(urlsplit(url)._replace(path="/" + dbname))


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


def sqlite_path(url: str) -> str | None:
    """The file a SQLite URL (or a plain ``.db`` path) names, or None if ``url`` is not one.

    ``sqlite:///jobs.db`` is ``jobs.db`` in the working directory and
    ``sqlite:////var/lib/jobs.db`` an absolute path, as in SQLAlchemy.
    """
    text = url.strip()
    if text.lower().startswith(_SQLITE_SCHEME):
        rest = text[len(_SQLITE_SCHEME) :]
        path = rest[1:] if rest.startswith("/") else ""
        if not path or path == ":memory:" or "?" in path:
            raise SoniqError(
                INVALID_DATABASE_URL,
                f"{url!r} does not name a SQLite file. Use {_SQLITE_FORMS}; for jobs kept "
                'in memory, use Soniq(backend="memory").',
            )
        return path
    if "://" not in text and text.lower().endswith(SQLITE_SUFFIXES):
        if _SCHEME_LIKE.match(text):
            raise SoniqError(
                INVALID_DATABASE_URL,
                f"{url!r} looks like a URL, but the only SQLite form is sqlite:///. Use "
                f"{_SQLITE_FORMS}.",
            )
        return text
    return None


def storage_kind(settings: SoniqSettings) -> StorageKind:
    """Which backend the settings choose: SONIQ_BACKEND if set, else the URL's kind.

    A SQLite URL or ``.db`` path means ``"sqlite"``; anything else (or no URL) means
    ``"postgres"``. ``"memory"`` needs no URL and ignores one.
    """
    url = settings.database_url
    url_kind: StorageKind | None = None
    if url is not None:
        url_kind = "sqlite" if sqlite_path(url) is not None else "postgres"
    chosen = settings.backend
    if chosen is None or chosen == "memory":
        return chosen or url_kind or "postgres"
    if url_kind is not None and url_kind != chosen:
        raise SoniqValueError(
            INVALID_SETTING,
            f"backend={chosen!r} (SONIQ_BACKEND) does not match the database URL, which "
            f"names a {url_kind} database. Give a {chosen} URL, or leave the backend "
            "unset to follow the URL.",
            setting="SONIQ_BACKEND",
        )
    return chosen


def require_sqlite_path(settings: SoniqSettings) -> str:
    """The SQLite file of the settings, or a SoniqError that says how to name one."""
    path = sqlite_path(settings.database_url) if settings.database_url else None
    if path is None:
        raise SoniqError(
            DATABASE_URL_MISSING,
            f"The sqlite backend needs a file: set SONIQ_DATABASE_URL to {_SQLITE_FORMS}.",
        )
    return path


def same_database(a: str, b: str) -> bool:
    """Whether two URLs name the same database: ``postgres://`` and ``postgresql://``,
    host case, a missing 5432 port and a trailing slash make no difference."""
    path_a, path_b = sqlite_path(a), sqlite_path(b)
    if path_a is not None or path_b is not None:
        return (
            path_a is not None
            and path_b is not None
            and os.path.realpath(path_a) == os.path.realpath(path_b)
        )
    return _identity(a) == _identity(b)


def _identity(url: str) -> dict[str, str]:
    parts = {k: str(v) for k, v in conninfo_params(normalise_database_url(url)).items() if v}
    parts["host"] = parts.get("host", "").lower()
    parts["port"] = parts.get("port", "5432")
    parts["dbname"] = parts.get("dbname", "").rstrip("/")
    return parts
