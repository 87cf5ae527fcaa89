"""What a plugin is: ``name``, ``version``, ``install(app)``, optional lifecycle hooks."""

from __future__ import annotations

import inspect
from typing import Any, Protocol, runtime_checkable

from soniq.errors import PLUGIN_INVALID, SoniqError

__all__ = ["SoniqPlugin", "check_plugin"]


@runtime_checkable
class SoniqPlugin(Protocol):
    """A plugin: any object with these three attributes (no base class needed).

    ``install(app)`` is called once, synchronously, when the plugin is installed; it
    registers what the plugin brings (hooks, middleware, CLI commands, migrations,
    dashboard panels). Two optional methods: ``async def on_startup(app)``, run when
    the app is set up or initialised (its error propagates), and ``async def
    on_shutdown(app)``, run when the app closes, in reverse install order (its error
    is logged and swallowed). A blocking ``soniq_sync`` app accepts either form.
    """

    name: str
    version: str

    def install(self, app: Any) -> None:
        """Register the plugin's parts on ``app``."""


def check_plugin(plugin: object, where: str = "") -> SoniqPlugin:
    """``plugin`` if it has the shape of a plugin, else ``SONIQ_PLUGIN_INVALID``
    (``where`` says where it came from, e.g. an entry point)."""
    origin = f" ({where})" if where else ""
    name = getattr(plugin, "name", None)
    problem = None
    if not isinstance(name, str) or not name.strip():
        problem = "a non-empty string `name`"
    elif not isinstance(getattr(plugin, "version", None), str):
        problem = "a string `version`"
    elif not callable(getattr(plugin, "install", None)):
        problem = "an `install(app)` method"
    else:
        for hook in ("on_startup", "on_shutdown"):
            value = getattr(plugin, hook, None)
            if value is not None and not callable(value):
                problem = f"`{hook}` callable (or absent)"
    if problem is not None:
        raise SoniqError(
            PLUGIN_INVALID,
            f"{plugin!r}{origin} is not a Soniq plugin: a plugin needs {problem}. Give it "
            "`name`, `version` and `install(app)`; `on_startup`/`on_shutdown` are optional.",
            plugin=name if isinstance(name, str) else None,
        )
    if inspect.iscoroutinefunction(plugin.install):  # type: ignore[attr-defined]
        raise SoniqError(
            PLUGIN_INVALID,
            f"Plugin {name!r}{origin}: install(app) must be a plain function, not async; "
            "do asynchronous set-up in `async def on_startup(app)`.",
            plugin=name,
        )
    return plugin  # type: ignore[return-value]
