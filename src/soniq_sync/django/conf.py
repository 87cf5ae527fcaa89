"""Reading ``settings.SONIQ`` and configuring the default ``soniq_sync`` app from it.

``SONIQ`` is a dict whose keys are Soniq's setting names in upper case
(``"DATABASE_URL"``, ``"CONCURRENCY"``, ``"QUEUES"`` ...; see SoniqSettings), plus
``"DATABASE_ALIAS"``: the Django database whose transactions jobs join (default
``"default"``). Values beat ``SONIQ_*`` environment variables, as keywords to
``Soniq(...)`` do. Without a database URL in ``SONIQ`` or ``$SONIQ_DATABASE_URL``, the
URL is built from ``DATABASES[DATABASE_ALIAS]``, so Soniq reads and writes the very
database Django's transactions write to.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from soniq.errors import INVALID_SETTING, SoniqError
from soniq.settings import SoniqSettings
from soniq.storage.urls import libpq_keywords, make_conninfo

#: The Django setting this app reads.
SETTING = "SONIQ"
#: The key of ``SONIQ`` that is not a Soniq setting: the Django database alias.
ALIAS_KEY = "DATABASE_ALIAS"
DEFAULT_ALIAS = "default"

# Connection keys of a DATABASES entry and their libpq names.
_DATABASE_KEYS = (
    ("NAME", "dbname"),
    ("USER", "user"),
    ("PASSWORD", "password"),
    ("HOST", "host"),
    ("PORT", "port"),
)


@dataclass(frozen=True)
class DjangoSoniqConfig:
    """``settings.SONIQ``, checked: the alias and the keywords for ``Soniq(...)``."""

    alias: str
    #: SoniqSettings keywords (lower case), the database URL included.
    overrides: dict[str, Any]
    #: True when the database URL was built from ``DATABASES[alias]``.
    url_from_databases: bool


def known_keys() -> list[str]:
    """Every key ``settings.SONIQ`` accepts, sorted."""
    return sorted({name.upper() for name in SoniqSettings.model_fields} | {ALIAS_KEY})


def read_config() -> DjangoSoniqConfig:
    """Check ``settings.SONIQ`` and return it; a SoniqError says what to fix."""
    from django.conf import settings

    raw = getattr(settings, SETTING, None)
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise SoniqError(
            INVALID_SETTING,
            f"settings.SONIQ must be a dict such as {{'DATABASE_ALIAS': 'default'}}, "
            f"got {type(raw).__name__}.",
            setting=SETTING,
        )
    known = known_keys()
    for key in raw:
        if isinstance(key, str) and key in known:
            continue
        hint = (
            f" Setting names are upper case: write {key.upper()!r}."
            if isinstance(key, str) and key.upper() in known
            else ""
        )
        raise SoniqError(
            INVALID_SETTING,
            f"settings.SONIQ has an unknown key {key!r}.{hint} Known keys: {', '.join(known)}.",
            setting=f"SONIQ[{key!r}]",
        )
    alias = raw.get(ALIAS_KEY, DEFAULT_ALIAS)
    check_alias(alias, f"settings.SONIQ[{ALIAS_KEY!r}]")
    overrides = {key.lower(): value for key, value in raw.items() if key != ALIAS_KEY}
    from_databases = (
        "database_url" not in overrides and not os.environ.get("SONIQ_DATABASE_URL", "").strip()
    )
    if from_databases:
        overrides["database_url"] = database_url_for(alias)
    try:
        SoniqSettings.load(**overrides)
    except SoniqError as exc:
        raise SoniqError(exc.code, f"settings.SONIQ: {exc.message}", **exc.details) from None
    return DjangoSoniqConfig(alias, overrides, from_databases)


def check_alias(alias: object, where: str) -> str:
    """Return ``alias`` if it names a PostgreSQL database in ``DATABASES``, else raise."""
    from django.conf import settings
    from django.db import connections

    if not isinstance(alias, str) or alias not in settings.DATABASES:
        raise SoniqError(
            INVALID_SETTING,
            f"{where} is {alias!r}, which is not a key of settings.DATABASES "
            f"({', '.join(map(repr, settings.DATABASES))}). Name the database Soniq's "
            "tables live in.",
            setting=where,
        )
    vendor = connections[alias].vendor
    if vendor != "postgresql":
        raise SoniqError(
            INVALID_SETTING,
            f"{where} is {alias!r}, a {vendor} database. Soniq's tables live in "
            "PostgreSQL: name a database whose ENGINE is PostgreSQL.",
            setting=where,
        )
    return alias


def database_url_for(alias: str) -> str:
    """A libpq connection string for ``DATABASES[alias]`` (OPTIONS libpq knows included).

    Django-only OPTIONS (``isolation_level``, ``pool``, ``server_side_binding`` ...)
    are left out; libpq ones such as ``sslmode`` or ``options`` (a search_path, say)
    are kept, so Soniq finds its tables where Django's connection does.
    """
    from django.db import connections

    settings_dict = connections[alias].settings_dict
    params: dict[str, Any] = {}
    for django_key, libpq_key in _DATABASE_KEYS:
        value = settings_dict.get(django_key)
        if value not in (None, ""):
            params[libpq_key] = str(value)
    libpq = _libpq_keywords()
    for key, value in (settings_dict.get("OPTIONS") or {}).items():
        if key in libpq and value is not None:
            params[key] = str(value)
    return make_conninfo("", **params)


def _database_key(alias: str) -> tuple[object, ...]:
    """What ``database_url_for(alias)`` depends on, cheap to compare."""
    from django.db import connections

    settings_dict = connections[alias].settings_dict
    options = settings_dict.get("OPTIONS") or {}
    return (
        *(settings_dict.get(key) for key, _ in _DATABASE_KEYS),
        tuple(sorted((k, repr(v)) for k, v in options.items())),
    )


@lru_cache(maxsize=1)
def _libpq_keywords() -> frozenset[str]:
    return libpq_keywords()
