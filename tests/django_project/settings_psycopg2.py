"""tests/django_project settings with Django's PostgreSQL backend on psycopg2.

Django prefers psycopg 3 whenever it is importable, and Soniq always installs it; a
backend on psycopg2 is what projects with a psycopg2-based database backend get. To
make Django's own backend pick psycopg2, psycopg is hidden while that backend loads,
then put back for Soniq.
"""

from __future__ import annotations

import sys

from tests.django_project.settings import *  # noqa: F403

_hidden = {
    name: module
    for name, module in list(sys.modules.items())
    if name == "psycopg" or name.startswith("psycopg.")
}
for _name in _hidden:
    del sys.modules[_name]
sys.modules["psycopg"] = None  # type: ignore[assignment]  # "import psycopg" now fails
try:
    import django.db.backends.postgresql.base  # noqa: F401
finally:
    del sys.modules["psycopg"]
    sys.modules.update(_hidden)
