"""SQL kept in files: the named queries and the numbered migrations."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from typing import Any

from psycopg import sql

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
_PARAM = re.compile(r"%\((\w+)\)s")


@dataclass(frozen=True)
class Query:
    """One named SQL statement in psycopg's ``%(name)s`` style, with other styles derived."""

    name: str
    text: str

    @cached_property
    def psycopg(self) -> bytes:
        """The text as psycopg takes it (bytes sidestep its LiteralString typing)."""
        return self.text.encode()

    @cached_property
    def param_names(self) -> tuple[str, ...]:
        """Distinct parameter names in order of first use: ``$1``, ``$2`` ... in that order."""
        return tuple(dict.fromkeys(_PARAM.findall(self.text)))

    @cached_property
    def dollar(self) -> str:
        """The text with ``$n`` placeholders (asyncpg)."""
        index = {name: i + 1 for i, name in enumerate(self.param_names)}
        return _PARAM.sub(lambda m: f"${index[m.group(1)]}", self.text).replace("%%", "%")

    @cached_property
    def colon(self) -> str:
        """The text with ``(:name)`` placeholders (SQLAlchemy's ``text()``).

        The parentheses keep a following ``::type`` cast from reading as part of the
        name.
        """
        return _PARAM.sub(lambda m: f"(:{m.group(1)})", self.text).replace("%%", "%")

    def with_identifiers(self, **names: str) -> sql.Composed:
        """The text with its ``{placeholders}`` filled by ``names`` as quoted identifiers.

        For the few statements that name a database, which PostgreSQL does not take
        as a bound parameter.
        """
        return sql.SQL(self.text).format(**{k: sql.Identifier(v) for k, v in names.items()})

    def positional(self, params: dict[str, object]) -> list[object]:
        """Parameter values in ``$n`` order."""
        return [params[name] for name in self.param_names]


_INCLUDE = re.compile(r"^[ \t]*-- include: (\w+)[ \t]*$", re.MULTILINE)


def _strip_comments(body: str) -> str:
    lines = [ln for ln in body.splitlines() if not ln.lstrip().startswith("--")]
    return "\n".join(lines).strip()


def load_queries(text: str) -> dict[str, Query]:
    """Split a queries file into named :class:`Query` objects.

    A name that starts with ``_`` is a fragment, not a query: a line
    ``-- include: _fragment`` in a query stands for the fragment's text. An include
    of a fragment the file does not define raises ``ValueError`` at load time, and so
    does an include inside a fragment (fragments stay one level deep).
    """
    parts = _NAME.split(text)
    bodies = dict(zip(parts[1::2], parts[2::2], strict=True))
    fragments = {name: body for name, body in bodies.items() if name.startswith("_")}
    for name, body in fragments.items():
        nested = _INCLUDE.search(body)
        if nested:
            raise ValueError(f"fragment {name} includes {nested.group(1)}: fragments can't")

    def expand(name: str, body: str) -> str:
        def fragment(match: re.Match[str]) -> str:
            wanted = match.group(1)
            if wanted not in fragments:
                raise ValueError(f"query {name} includes {wanted}, which is not defined")
            return _strip_comments(fragments[wanted])

        return _INCLUDE.sub(fragment, body)

    return {
        name: Query(name, _strip_comments(expand(name, body)))
        for name, body in bodies.items()
        if not name.startswith("_")
    }


def _sql_text(*parts: str) -> str:
    return resources.files("soniq.sql").joinpath("/".join(parts)).read_text(encoding="utf-8")


#: The PostgreSQL queries, by name.
QUERIES: dict[str, Query] = load_queries(_sql_text("queries.sql"))
#: Their SQLite twins (same names, parameters and output columns), by name.
SQLITE_QUERIES: dict[str, Query] = load_queries(_sql_text("sqlite", "queries.sql"))


def migration_report(applied: list[dict[str, Any]], shipped: list[str]) -> dict[str, Any]:
    """``applied`` as given, and the ``pending`` and ``unknown`` versions it implies.

    ``unknown`` lists versions recorded in the database that this Soniq does not ship,
    which means a newer Soniq has upgraded the schema.
    """
    done = {entry["version"] for entry in applied}
    return {
        "applied": applied,
        "pending": [v for v in shipped if v not in done],
        "unknown": sorted(done - set(shipped)),
    }


def migration_files() -> list[tuple[str, str]]:
    """``(version, sql)`` for every migration file, in order."""
    folder = resources.files("soniq.sql").joinpath("migrations")
    found = sorted(
        (entry.name, entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    )
    return [(name.removesuffix(".sql"), text) for name, text in found]
