"""Finding plugins through the ``soniq.plugins`` entry-point group.

Nothing is loaded unless asked: ``SONIQ_PLUGINS`` (or ``soniq --plugins``) names the
entry points to load, and ``*`` or ``all`` there, or ``Soniq(autoload_plugins=True)``,
loads every one installed.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable, Sequence

from soniq.errors import PLUGIN_LOAD_FAILED, SoniqError
from soniq.plugins.spec import SoniqPlugin, check_plugin

__all__ = ["ALL", "ENTRY_POINT_GROUP", "discover_plugins", "wants_all"]

#: The entry-point group plugin distributions declare.
ENTRY_POINT_GROUP = "soniq.plugins"
#: Names that stand for every installed entry point.
ALL = frozenset({"*", "all"})


def wants_all(names: Iterable[str]) -> bool:
    """Whether ``names`` asks for every installed plugin."""
    return any(name.strip().lower() in ALL for name in names)


def discover_plugins(names: Sequence[str] | None = None) -> list[SoniqPlugin]:
    """Load plugins from the ``soniq.plugins`` entry points, in the order asked.

    ``names`` are entry-point names; None (or ``*``/``all`` among them) loads every
    installed entry point, sorted by name. An entry point may point at a plugin
    object or at a class, which is instantiated without arguments. A name that is
    not installed, an entry point whose import fails, and an object that is not a
    plugin raise ``SONIQ_PLUGIN_LOAD_FAILED`` or ``SONIQ_PLUGIN_INVALID`` naming it.
    """
    found = {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    if names is None or wants_all(names):
        chosen = sorted(found)
    else:
        chosen = list(dict.fromkeys(n.strip() for n in names if n.strip()))
    missing = [name for name in chosen if name not in found]
    if missing:
        installed = ", ".join(sorted(found)) or "none"
        raise SoniqError(
            PLUGIN_LOAD_FAILED,
            f"No plugin entry point named {missing[0]!r} in group {ENTRY_POINT_GROUP!r} "
            f"(installed: {installed}). Install the plugin's package, or fix the name in "
            "SONIQ_PLUGINS / --plugins.",
            entry_point=missing[0],
        )
    return [_load(found[name]) for name in chosen]


def _load(entry: importlib.metadata.EntryPoint) -> SoniqPlugin:
    where = f"entry point {entry.name!r} = {entry.value!r}"
    try:
        loaded = entry.load()
        if isinstance(loaded, type):
            loaded = loaded()
    except Exception as exc:
        raise SoniqError(
            PLUGIN_LOAD_FAILED,
            f"Plugin {where} failed to load: {type(exc).__name__}: {exc}. Fix or "
            "reinstall the plugin, or leave it out of SONIQ_PLUGINS / --plugins.",
            entry_point=entry.name,
        ) from exc
    return check_plugin(loaded, where)
