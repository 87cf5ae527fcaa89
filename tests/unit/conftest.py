"""Fixtures for the unit tests: no database, and no SONIQ_* settings leaking in."""

from __future__ import annotations

import os

import pytest

from soniq import Soniq


@pytest.fixture(autouse=True)
def _clean_soniq_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests see only the SONIQ_* variables they set themselves."""
    for key in list(os.environ):
        if key.startswith("SONIQ_") and not key.startswith("SONIQ_TEST_"):
            monkeypatch.delenv(key)


@pytest.fixture
def app() -> Soniq:
    """A ``Soniq`` with no database URL (overrides the database-backed ``app`` fixture)."""
    return Soniq()
