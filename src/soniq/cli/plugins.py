"""Plugin commands on the ``soniq`` command line.

Before the command line is parsed, the plugins named by ``--plugins`` (or
``SONIQ_PLUGINS``) are installed on an app of the CLI's own, built from the
environment; the commands they add to ``app.cli`` become ``soniq`` commands. ``--plugins``
also sets ``SONIQ_PLUGINS`` for the process, so every app a command makes (``soniq
setup``'s, the worker's) installs the same plugins and applies their migrations.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import click

from soniq.cli.output import fail
from soniq.errors import PLUGIN_DUPLICATE, SoniqError

__all__ = ["PluginGroup", "plugins_option"]

_META_KEY = "soniq.plugin_commands"

#: ``--plugins`` on the ``soniq`` group (read before parsing, see PluginGroup).
plugins_option = click.option(
    "--plugins",
    "plugins",
    metavar="NAMES",
    help="Install these soniq.plugins entry points (comma-separated; '*' for all) and "
    "offer their commands. Default: $SONIQ_PLUGINS.",
)


class PluginGroup(click.Group):
    """The ``soniq`` group: its own commands plus those of the plugins asked for."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Load the plugins named on the command line or in the environment, then
        parse as usual (so ``soniq --plugins x --help`` lists x's commands)."""
        names = _plugins_argument(args)
        if names is not None:
            os.environ["SONIQ_PLUGINS"] = names
        if os.environ.get("SONIQ_PLUGINS", "").strip():
            try:
                ctx.meta[_META_KEY] = self._plugin_commands()
            except SoniqError as exc:
                fail(exc)
        return super().parse_args(ctx, args)

    def _plugin_commands(self) -> dict[str, click.Command]:
        from soniq.app import Soniq

        commands = Soniq().cli.commands
        for name in commands:
            if name in self.commands:
                raise SoniqError(
                    PLUGIN_DUPLICATE,
                    f"A plugin adds a `soniq {name}` command, but soniq has one of that "
                    "name. The plugin must register it under another name.",
                    command=name,
                )
        return commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Soniq's commands, then the plugins'."""
        return [*super().list_commands(ctx), *_loaded(ctx)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Soniq's command of that name, else a plugin's."""
        return super().get_command(ctx, cmd_name) or _loaded(ctx).get(cmd_name)


def _loaded(ctx: click.Context) -> dict[str, click.Command]:
    commands: dict[str, click.Command] = ctx.find_root().meta.get(_META_KEY, {})
    return commands


def _plugins_argument(args: Sequence[str]) -> str | None:
    """The value of ``--plugins`` among the group's own options (before the command)."""
    rest = iter(args)
    for arg in rest:
        if arg == "--plugins":
            return next(rest, None)
        if arg.startswith("--plugins="):
            return arg.removeprefix("--plugins=")
        if not arg.startswith("-"):
            return None  # the command's name: what follows is the command's
    return None
