"""The plugin API under its original import path, ``soniq.plugin``; see :mod:`soniq.plugins`."""

from soniq.plugins import (
    ENTRY_POINT_GROUP,
    MigrationSource,
    PanelSpec,
    SoniqPlugin,
    discover_plugins,
)

__all__ = ["ENTRY_POINT_GROUP", "MigrationSource", "PanelSpec", "SoniqPlugin", "discover_plugins"]
