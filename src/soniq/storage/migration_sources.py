"""Migrations that plugins bring: folders of ``NNNN_name.sql`` files under a prefix.

``app.migrations.register_source("my_plugin.migrations", prefix="audit")`` (a package
or a folder path) adds a source. ``setup`` applies its files after Soniq's own, in
file-name order, in the same transaction and under the same lock, and records each as
``<prefix>/<file name without .sql>`` in ``soniq_migrations``; core versions have no
``/``, so the two never collide. PostgreSQL only: SQLite and memory apps skip them.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from soniq.errors import INVALID_MIGRATION_SOURCE, SoniqError

if sys.version_info >= (3, 11):
    from importlib.resources.abc import Traversable
else:  # pragma: no cover - Python 3.10
    from importlib.abc import Traversable

__all__ = ["MigrationSource", "MigrationSources", "skip_plugin_migrations"]

logger = logging.getLogger("soniq.migrations")

_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_FILE = re.compile(r"^[0-9]+_[A-Za-z0-9_.-]+\.sql$")


@dataclass(frozen=True)
class MigrationSource:
    """One registered folder of migrations and the prefix its versions carry."""

    prefix: str
    folder: Traversable
    #: The ``.sql`` file names, in the order they apply.
    names: tuple[str, ...]

    def versions(self) -> list[str]:
        """The versions recorded for the files: ``<prefix>/<name>``."""
        return [f"{self.prefix}/{name.removesuffix('.sql')}" for name in self.names]

    def files(self) -> list[tuple[str, str]]:
        """``(version, sql)`` for each file, in order (read now)."""
        return [
            (version, self.folder.joinpath(name).read_text(encoding="utf-8"))
            for version, name in zip(self.versions(), self.names, strict=True)
        ]


class MigrationSources:
    """The plugin migration sources of one app (``app.migrations``), in registration
    order."""

    def __init__(self) -> None:
        self._sources: dict[str, MigrationSource] = {}

    def register_source(self, source: str | Path | Traversable, prefix: str) -> MigrationSource:
        """Add the ``.sql`` files of ``source`` (a folder path, or a dotted package
        name whose folder holds them) under ``prefix``; ``setup`` applies them.

        Checked now: a bad prefix, a prefix already registered, a missing folder, a
        folder without ``.sql`` files or a file not named ``NNNN_name.sql`` raise
        ``SONIQ_INVALID_MIGRATION_SOURCE``.
        """
        if not isinstance(prefix, str) or not _PREFIX.match(prefix):
            raise SoniqError(
                INVALID_MIGRATION_SOURCE,
                f"Migration prefix {prefix!r} is not valid: use 1-63 letters, digits, '_', "
                "'.' or '-', starting with a letter or digit (e.g. your plugin's name).",
                prefix=prefix,
            )
        if prefix in self._sources:
            raise SoniqError(
                INVALID_MIGRATION_SOURCE,
                f"Migration prefix {prefix!r} is registered already. Each plugin needs a "
                "prefix of its own.",
                prefix=prefix,
            )
        folder = _folder(source)
        names = sorted(
            (entry.name for entry in folder.iterdir() if entry.name.endswith(".sql")),
            key=_by_number,
        )
        bad = [name for name in names if not _FILE.match(name)]
        if bad or not names:
            problem = f"{bad[0]!r} is not named NNNN_name.sql" if bad else "it has no .sql files"
            raise SoniqError(
                INVALID_MIGRATION_SOURCE,
                f"Migration source {source!s} can't be used: {problem}. Put the plugin's "
                "migrations there as 0001_create_tables.sql, 0002_....sql.",
                prefix=prefix,
            )
        registered = MigrationSource(prefix, folder, tuple(names))
        self._sources[prefix] = registered
        return registered

    @property
    def sources(self) -> tuple[MigrationSource, ...]:
        """The registered sources, in registration order."""
        return tuple(self._sources.values())

    def __iter__(self) -> Iterator[MigrationSource]:
        return iter(self._sources.values())

    def __len__(self) -> int:
        return len(self._sources)


def _folder(source: str | Path | Traversable) -> Traversable:
    """The folder ``source`` names, or ``SONIQ_INVALID_MIGRATION_SOURCE``."""
    if isinstance(source, str) and not Path(source).is_dir():
        try:
            folder = resources.files(source)
        except (ModuleNotFoundError, TypeError, ValueError) as exc:
            raise SoniqError(
                INVALID_MIGRATION_SOURCE,
                f"Migration source {source!r} is neither a folder nor an importable "
                f"package ({type(exc).__name__}: {exc}). Pass the folder's path, or the "
                "dotted name of the package that holds the .sql files.",
                source=source,
            ) from None
    elif isinstance(source, (str, Path)):
        folder = Path(source)
    else:
        folder = source
    if not folder.is_dir():
        raise SoniqError(
            INVALID_MIGRATION_SOURCE,
            f"Migration source {source!s} is not a folder. Pass the folder that holds "
            "the plugin's .sql files.",
            source=str(source),
        )
    return folder


def skip_plugin_migrations(sources: Sequence[MigrationSource], backend: str) -> None:
    """Warn that a SQLite or memory backend leaves the plugin ``sources`` unapplied."""
    if sources:
        logger.warning(
            "plugin migrations (%s) are applied on PostgreSQL only; the %s backend skips "
            "them, so the plugin's own tables are not created here",
            ", ".join(source.prefix for source in sources),
            backend,
        )


def _by_number(name: str) -> tuple[int, str]:
    """Order migration files by their number (``2_x`` before ``10_y``), then name."""
    number, _, _ = name.partition("_")
    return (int(number) if number.isascii() and number.isdigit() else -1, name)
