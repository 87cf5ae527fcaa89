"""A bare Django project: ``settings.configure(...)``, ``django.setup()``, views, enqueues.

Run by tests/acceptance/test_django_join.py as
``python -m tests.acceptance.django_bare.views`` with ``$SHOP_CONFIG``, a JSON object:

- ``scenario``: ``views``, ``separate``, ``local`` or ``refusals`` (the functions below);
- ``driver``: ``psycopg`` or ``psycopg2``, the driver of Django's PostgreSQL backend;
- ``databases``: alias -> ``{"url": libpq URL}``, ``{"sqlite": path}`` or
  ``{"url": ..., "proxied": true}`` (a backend Soniq cannot write through);
- ``installed_apps`` (``[]`` unless the test adds ``soniq_sync.django``), and
  ``soniq``: the ``SONIQ`` setting, left unset when absent;
- ``own_url``: the database URL of the app the script makes itself.

The default app takes ``$SONIQ_DATABASE_URL`` (or, with the app installed, DATABASES).
Every case enqueues with ``args={"ref": <case name>}`` (or ``ref=``), so the test can
tell which cases left jobs. A case named ``gone:...`` expects none, ``kept:...`` its own.
The script prints one JSON object: ``ids`` (case -> job ids), ``errors`` (case -> code and
message of the SoniqError it raised) and ``log`` (the messages of the ``soniq.django``
logger). The test checks the jobs through Soniq's API.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import soniq_sync

CONFIG: dict[str, Any] = json.loads(os.environ["SHOP_CONFIG"])
RESULT: dict[str, Any] = {"ids": {}, "errors": {}, "log": []}
JOB = "shop.receipt"
OWN_JOB = "shop.own_receipt"

#: One way to enqueue: takes the ref, returns the ids.
Enqueue = Callable[[str], list[str]]


class Boom(Exception):
    """What a view raises to roll its transaction back."""


class Collect(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        RESULT["log"].append(record.getMessage())


def databases() -> dict[str, dict[str, Any]]:
    from psycopg import conninfo

    result: dict[str, dict[str, Any]] = {}
    for alias, spec in CONFIG["databases"].items():
        if "sqlite" in spec:
            result[alias] = {"ENGINE": "django.db.backends.sqlite3", "NAME": spec["sqlite"]}
            continue
        parts = conninfo.conninfo_to_dict(spec["url"])
        engine = (
            "tests.acceptance.django_bare.proxied_backend"
            if spec.get("proxied")
            else "django.db.backends.postgresql"
        )
        result[alias] = {
            "ENGINE": engine,
            "NAME": parts.get("dbname", ""),
            "USER": parts.get("user", ""),
            "PASSWORD": parts.get("password", ""),
            "HOST": parts.get("host", ""),
            "PORT": parts.get("port", ""),
            "ATOMIC_REQUESTS": True,
        }
    return result


def set_up_django() -> None:
    import django
    from django.conf import settings

    extra = {"SONIQ": CONFIG["soniq"]} if "soniq" in CONFIG else {}
    settings.configure(
        DATABASES=databases(),
        INSTALLED_APPS=CONFIG["installed_apps"],
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["testserver"],
        MIDDLEWARE=[],
        SECRET_KEY="bare",
        USE_TZ=True,
        **extra,
    )
    if CONFIG["driver"] == "psycopg2":
        # As tests/django_project/settings_psycopg2.py: Django's backend prefers
        # psycopg 3 whenever it imports, so hide it while the backend loads.
        hidden = {
            name: module
            for name, module in sys.modules.items()
            if name == "psycopg" or name.startswith("psycopg.")
        }
        for name in hidden:
            del sys.modules[name]
        sys.modules["psycopg"] = None  # type: ignore[assignment]
        try:
            import django.db.backends.postgresql.base
        finally:
            del sys.modules["psycopg"]
            sys.modules.update(hidden)
    django.setup()


# --------------------------------------------------------------------------- the views


def place_order(ref: str) -> None:
    """The view's own write, on Django's connection."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("INSERT INTO shop_order (ref) VALUES (%s)", [ref])


def rolled_back_view(ref: str, enqueue: Enqueue) -> list[str]:
    """Writes an order, enqueues, then fails: the transaction rolls back."""
    from django.db import transaction

    ids: list[str] = []
    try:
        with transaction.atomic():
            place_order(ref)
            ids = enqueue(ref)
            raise Boom
    except Boom:
        pass
    return ids


def committed_view(ref: str, enqueue: Enqueue) -> list[str]:
    from django.db import transaction

    with transaction.atomic():
        place_order(ref)
        return enqueue(ref)


def outside_atomic(ref: str, enqueue: Enqueue) -> list[str]:
    return enqueue(ref)


def atomic_request(request: Any, outcome: str) -> Any:
    """A view under ATOMIC_REQUESTS: no transaction code of its own."""
    from django.http import HttpResponse

    ref = request.GET["ref"]
    place_order(ref)
    job_id = soniq_sync.enqueue(JOB, args={"ref": ref})
    RESULT["ids"][ref] = [job_id]
    if outcome == "fail":
        raise Boom("the view failed after enqueueing")
    return HttpResponse(job_id)


def _urlpatterns() -> list[Any]:
    from django.urls import path

    return [path("orders/<str:outcome>/", atomic_request)]


urlpatterns: list[Any] = []


def request(case: str, outcome: str) -> None:
    """GET the ATOMIC_REQUESTS view through Django's request handling."""
    from django.test import Client

    response = Client(raise_request_exception=False).get(f"/orders/{outcome}/", {"ref": case})
    RESULT.setdefault("status", {})[case] = response.status_code


def paths(own: soniq_sync.Soniq) -> dict[str, Enqueue]:
    """Every blocking way to enqueue: the module-level functions, the default app and
    an app of the user's own."""
    return {
        "soniq_sync.enqueue": lambda ref: [soniq_sync.enqueue(JOB, args={"ref": ref})],
        "soniq_sync.enqueue_many": lambda ref: soniq_sync.enqueue_many(
            JOB, [{"ref": ref}, {"ref": ref}]
        ),
        "soniq_sync.schedule": lambda ref: [soniq_sync.schedule(JOB, 3600, args={"ref": ref})],
        "default_app().enqueue": lambda ref: [
            soniq_sync.default_app().enqueue(JOB, args={"ref": ref})
        ],
        "own.enqueue": lambda ref: [own.enqueue(OWN_JOB, args={"ref": ref})],
        "own.enqueue_many": lambda ref: own.enqueue_many(OWN_JOB, [{"ref": ref}, {"ref": ref}]),
        "own.schedule": lambda ref: [own.schedule(OWN_JOB, 3600, args={"ref": ref})],
    }


def run(case: str, view: Callable[[str, Enqueue], list[str]], enqueue: Enqueue) -> None:
    """One case: its ids, or the SoniqError it raised. The case name is the jobs' ref."""
    try:
        RESULT["ids"][case] = view(case, enqueue)
    except soniq_sync.SoniqError as exc:
        RESULT["errors"][case] = {"code": exc.code, "message": exc.message}


# --------------------------------------------------------------------------- scenarios


def views(own: soniq_sync.Soniq) -> None:
    """Soniq's database is the alias's: enqueues join Django's transaction on every path."""
    import psycopg
    from django.db import transaction

    for label, enqueue in paths(own).items():
        run(f"gone:rolled back view, {label}", rolled_back_view, enqueue)
        run(f"kept:committed view, {label}", committed_view, enqueue)
        run(f"kept:outside atomic, {label}", outside_atomic, enqueue)

    # A rolled-back savepoint takes only its own job.
    default_enqueue = paths(own)["soniq_sync.enqueue"]
    with transaction.atomic():
        run("kept:block around a rolled-back savepoint", outside_atomic, default_enqueue)
        run("gone:rolled-back savepoint", rolled_back_view, default_enqueue)

    # Autocommit switched off by hand is a transaction too.
    for case, finish in (
        ("gone:set_autocommit(False), rollback", transaction.rollback),
        ("kept:set_autocommit(False), commit", transaction.commit),
    ):
        transaction.set_autocommit(False)
        try:
            run(case, outside_atomic, default_enqueue)
            finish()
        finally:
            transaction.set_autocommit(True)

    request("gone:ATOMIC_REQUESTS view that fails", "fail")
    request("kept:ATOMIC_REQUESTS view", "ok")

    # connection= still wins: the job commits with that connection, not with Django.
    with psycopg.connect(CONFIG["own_url"]) as mine:
        run(
            "kept:connection= of its own, in a rolled-back view",
            rolled_back_view,
            lambda ref: [soniq_sync.enqueue(JOB, args={"ref": ref}, connection=mine)],
        )
    # So does a connection_provider of the user's; this one says "use the pool".
    own.connection_provider = lambda: None
    run(
        "kept:connection_provider of its own, in a rolled-back view",
        rolled_back_view,
        paths(own)["own.enqueue"],
    )


def separate(own: soniq_sync.Soniq) -> None:
    """Soniq's database is not the alias's: every job is written at once, one warning."""
    for label, enqueue in paths(own).items():
        run(f"kept:rolled back view, {label}", rolled_back_view, enqueue)
        run(f"kept:committed view, {label}", committed_view, enqueue)
    request("kept:ATOMIC_REQUESTS view that fails", "fail")
    request("kept:ATOMIC_REQUESTS view", "ok")


def local(own: soniq_sync.Soniq) -> None:
    """Soniq on SQLite: written at once with one warning; in memory: at once, silently."""
    from soniq_sync.testing import in_memory

    with in_memory(soniq_sync.default_app()) as app:
        ids = rolled_back_view("memory", lambda ref: [app.enqueue(JOB, args={"ref": ref})])
        RESULT["memory"] = {
            "found": [app.get_job(i) is not None for i in ids],
            "log": list(RESULT["log"]),
        }
    for label, enqueue in paths(own).items():
        run(f"kept:rolled back view, {label}", rolled_back_view, enqueue)


def refusals(own: soniq_sync.Soniq) -> None:
    """Settings that cannot work, and a driver Soniq cannot write through: refused."""
    from django.db import transaction
    from django.test import override_settings

    enqueue = paths(own)["soniq_sync.enqueue"]
    for label, setting in (
        ("unknown alias", {"DATABASE_ALIAS": "missing"}),
        ("alias that is not PostgreSQL", {"DATABASE_ALIAS": "lite"}),
        ("SONIQ that is not a dict", ["DATABASE_ALIAS", "default"]),
        ("alias that is not a string", {"DATABASE_ALIAS": 1}),
    ):
        with override_settings(SONIQ=setting):
            run(f"refused:{label}, committed view", committed_view, enqueue)
            run(f"refused:{label}, outside atomic", outside_atomic, enqueue)

    with override_settings(SONIQ={"DATABASE_ALIAS": "proxied"}):
        with transaction.atomic(using="proxied"):
            run("refused:driver Soniq cannot write through, in atomic", outside_atomic, enqueue)
        run("kept:driver Soniq cannot write through, outside atomic", outside_atomic, enqueue)

    # An app of the user's without a URL, in a project without soniq_sync.django.
    url = os.environ.pop("SONIQ_DATABASE_URL")
    try:
        nameless = soniq_sync.Soniq()
        nameless.job(name=OWN_JOB)(lambda ref: None)
        run(
            "refused:app without a database URL, committed view",
            committed_view,
            lambda ref: [nameless.enqueue(OWN_JOB, args={"ref": ref})],
        )
    finally:
        os.environ["SONIQ_DATABASE_URL"] = url


def main() -> None:
    handler = Collect()
    logging.getLogger("soniq.django").addHandler(handler)
    set_up_django()
    global urlpatterns
    urlpatterns = _urlpatterns()

    from django.db import connections

    for alias in CONFIG["databases"]:
        if alias == "proxied":
            continue
        with connections[alias].cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS shop_order (ref text)")
    RESULT["driver"] = type(connections["default"].connection).__module__.partition(".")[0]

    soniq_sync.job(name=JOB)(lambda ref: None)
    own = soniq_sync.Soniq(CONFIG["own_url"])
    own.job(name=OWN_JOB)(lambda ref: None)
    try:
        {"views": views, "separate": separate, "local": local, "refusals": refusals}[
            CONFIG["scenario"]
        ](own)
    finally:
        own.close()
        soniq_sync.default_app().close()
    print(json.dumps(RESULT))


if __name__ == "__main__":
    main()
