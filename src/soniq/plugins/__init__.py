"""Plugins: packages that extend a Soniq app through ``install(app)``.

A plugin is any object with ``name``, ``version`` and ``install(app)`` (see
:class:`SoniqPlugin`), installed with ``Soniq(plugins=[...])``, ``app.use(plugin)``
or, on opt-in, from the ``soniq.plugins`` entry points (``SONIQ_PLUGINS``,
``soniq --plugins``, ``Soniq(autoload_plugins=True)``). From ``install`` it may add
hooks and middleware, ``soniq`` CLI commands (``app.cli``), SQL migrations
(``app.migrations``) and dashboard panels (``app.dashboard``). The guide is
``docs/guides/plugins.md``.
"""

from soniq.plugins.commands import CliCommands
from soniq.plugins.entry_points import ENTRY_POINT_GROUP, discover_plugins
from soniq.plugins.installed import InstalledPlugins
from soniq.plugins.panels import DashboardPanels, PanelSpec
from soniq.plugins.spec import SoniqPlugin, check_plugin
from soniq.storage.migration_sources import MigrationSource, MigrationSources

__all__ = [
    "ENTRY_POINT_GROUP",
    "CliCommands",
    "DashboardPanels",
    "InstalledPlugins",
    "MigrationSource",
    "MigrationSources",
    "PanelSpec",
    "SoniqPlugin",
    "check_plugin",
    "discover_plugins",
]
