"""Dashboard panels that plugins contribute: ``app.dashboard.add_panel(PanelSpec(...))``.

Only the registry lives here; the dashboard reads ``app.dashboard.panels``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from soniq.errors import INVALID_ARGUMENT, PanelDuplicateError, SoniqError

__all__ = ["DashboardPanels", "PanelSpec"]


@dataclass(frozen=True)
class PanelSpec:
    """One dashboard panel: a unique ``id``, a ``title``, and ``render``, which the
    dashboard calls to produce the panel's content."""

    id: str
    title: str
    render: Callable[..., Any]


class DashboardPanels:
    """The panels registered on one app, in registration order."""

    def __init__(self) -> None:
        self._panels: dict[str, PanelSpec] = {}

    def add_panel(self, panel: PanelSpec) -> PanelSpec:
        """Register ``panel``; an id already taken raises ``SONIQ_PANEL_DUPLICATE``
        (a ``ValueError`` too)."""
        if not isinstance(panel, PanelSpec):
            raise SoniqError(
                INVALID_ARGUMENT,
                f"add_panel() takes a PanelSpec(id, title, render), got {panel!r}.",
            )
        if not isinstance(panel.id, str) or not panel.id or not callable(panel.render):
            raise SoniqError(
                INVALID_ARGUMENT,
                f"PanelSpec needs a non-empty string id and a callable render, got {panel!r}.",
            )
        if panel.id in self._panels:
            raise PanelDuplicateError(
                f"A dashboard panel with id {panel.id!r} is already registered "
                f"({self._panels[panel.id].title!r}). Give each panel its own id.",
                panel_id=panel.id,
            )
        self._panels[panel.id] = panel
        return panel

    @property
    def panels(self) -> list[PanelSpec]:
        """The registered panels, in registration order."""
        return list(self._panels.values())

    def get(self, panel_id: str) -> PanelSpec | None:
        """The panel with ``panel_id``, or None."""
        return self._panels.get(panel_id)
