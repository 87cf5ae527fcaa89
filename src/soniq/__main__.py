"""``python -m soniq`` runs the CLI."""

from soniq.cli import main

main(prog_name="soniq")
