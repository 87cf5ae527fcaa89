"""CLI commands that plugins add to ``soniq``: ``app.cli.add_command(click_command)``.

The ``soniq`` command line installs the plugins named by ``SONIQ_PLUGINS`` or
``--plugins`` on an app of its own before it parses the rest of the command, and
offers the commands they added next to its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from soniq.errors import INVALID_ARGUMENT, PLUGIN_DUPLICATE, SoniqError

if TYPE_CHECKING:
    import click

__all__ = ["CliCommands"]


class CliCommands:
    """The click commands (or groups) registered on one app, by name."""

    def __init__(self) -> None:
        self._commands: dict[str, click.Command] = {}

    def add_command(self, command: click.Command, name: str | None = None) -> click.Command:
        """Offer ``command`` as ``soniq <name>`` (default: the command's own name).

        A name taken by another plugin's command raises ``SONIQ_PLUGIN_DUPLICATE``.
        """
        import click

        if not isinstance(command, click.Command):
            raise SoniqError(
                INVALID_ARGUMENT,
                f"cli.add_command() takes a click command (made with @click.command() or "
                f"@click.group()), got {command!r}.",
            )
        name = name or command.name
        if not name:
            raise SoniqError(INVALID_ARGUMENT, f"The command {command!r} needs a name.")
        if name in self._commands:
            raise SoniqError(
                PLUGIN_DUPLICATE,
                f"Two plugins add a `soniq {name}` command. Rename one of them "
                "(cli.add_command(command, name=...)).",
                command=name,
            )
        self._commands[name] = command
        return command

    @property
    def commands(self) -> dict[str, click.Command]:
        """The registered commands by name, in registration order."""
        return dict(self._commands)
