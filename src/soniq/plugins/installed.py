"""The plugins installed on one app, and which of them have started."""

from __future__ import annotations

from typing import Any

from soniq.errors import PLUGIN_DUPLICATE, SoniqError
from soniq.plugins.spec import SoniqPlugin, check_plugin

__all__ = ["InstalledPlugins"]


class InstalledPlugins:
    """Plugins in install order. ``started`` are those the app has started (their
    ``on_startup``, if any, ran) since it last closed; ``close`` stops them."""

    def __init__(self) -> None:
        self._plugins: dict[str, SoniqPlugin] = {}
        self._origins: dict[str, str] = {}
        self.started: list[SoniqPlugin] = []

    def __iter__(self) -> Any:
        return iter(self._plugins.values())

    def __len__(self) -> int:
        return len(self._plugins)

    def __contains__(self, name: object) -> bool:
        return name in self._plugins

    def names(self) -> list[str]:
        """The installed plugins' names, in install order."""
        return list(self._plugins)

    def install(self, plugin: object, app: Any, origin: str) -> SoniqPlugin:
        """Check ``plugin``, call its ``install(app)`` and record it under its name.

        ``origin`` says how it came (for the duplicate message). A name already
        installed raises ``SONIQ_PLUGIN_DUPLICATE``; if ``install`` raises, the plugin
        is not recorded and the error propagates.
        """
        checked = check_plugin(plugin, origin if origin.startswith("entry point") else "")
        name = checked.name
        if name in self._plugins:
            raise SoniqError(
                PLUGIN_DUPLICATE,
                f"A plugin named {name!r} is installed on this app already (from "
                f"{self._origins[name]}); installing it again from {origin} would run its "
                "install() twice. Install each plugin once: drop one of them.",
                plugin=name,
            )
        checked.install(app)
        self._plugins[name] = checked
        self._origins[name] = origin
        return checked

    def to_start(self) -> list[SoniqPlugin]:
        """Installed plugins not started since the last close, in install order."""
        return [p for p in self._plugins.values() if p not in self.started]

    def to_stop(self) -> list[SoniqPlugin]:
        """The started plugins in reverse order; they count as stopped from now."""
        stopping, self.started = self.started[::-1], []
        return stopping
