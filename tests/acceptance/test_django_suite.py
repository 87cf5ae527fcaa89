"""The Django integration's tests (tests/django_project), each run in a process of its own.

Django's settings can be configured once per process and pytest-django changes how a
session runs, so the Django project's tests run as a separate pytest process per
settings module (psycopg 3, then psycopg2), on a fresh database with Soniq's tables.
The rest of the suite never configures Django.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "settings_module", ["tests.django_project.settings", "tests.django_project.settings_psycopg2"]
)
def test_django_project(database_url: str, settings_module: str) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SONIQ_") and k != "DJANGO_SETTINGS_MODULE"
    }
    env.update(
        DJANGO_SETTINGS_MODULE=settings_module,
        SONIQ_DJANGO_TEST_DATABASE_URL=database_url,
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/django_project"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"tests/django_project failed:\n{proc.stdout}\n{proc.stderr}"
