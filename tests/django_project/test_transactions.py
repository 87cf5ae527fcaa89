"""soniq_sync.enqueue in a Django project: inside atomic it joins Django's transaction."""

from __future__ import annotations

import uuid

import pytest
from django.core.cache import cache
from django.db import connection, connections, transaction
from django.test import Client

import soniq_sync
from soniq.errors import UNSUPPORTED_CONNECTION, SoniqError
from soniq_sync.django import atomic_connection, atomic_connection_for
from tests.django_project.conftest import Outside
from tests.django_project.testapp.models import Order


class Boom(Exception):
    pass


def ref() -> str:
    return uuid.uuid4().hex


def test_atomic_commit_writes_the_job_with_the_view(outside: Outside) -> None:
    key = ref()
    with transaction.atomic():
        Order.objects.create(ref=key)
        job_id = soniq_sync.enqueue("testapp.record", args={"ref": key})
        assert atomic_connection() is not None
        # Not committed: another connection sees neither the order nor the job.
        assert outside.job(job_id) is None
        assert not outside.order_exists(key)
    assert outside.order_exists(key)
    row = outside.job(job_id)
    assert row is not None
    assert row[:3] == ("testapp.record", {"ref": key}, "plain")


def test_atomic_rollback_leaves_no_job(outside: Outside) -> None:
    key = ref()
    with pytest.raises(Boom), transaction.atomic():
        Order.objects.create(ref=key)
        job_id = soniq_sync.enqueue("testapp.record", args={"ref": key})
        raise Boom
    assert outside.job(job_id) is None
    assert not outside.order_exists(key)


def test_outside_atomic_the_job_commits_at_once(outside: Outside) -> None:
    key = ref()
    assert atomic_connection() is None
    job_id = soniq_sync.enqueue("testapp.record", args={"ref": key})
    assert outside.job(job_id) is not None
    # A later transaction that rolls back does not take the job with it.
    with pytest.raises(Boom), transaction.atomic():
        Order.objects.create(ref=key)
        raise Boom
    assert outside.job(job_id) is not None
    assert not outside.order_exists(key)


def test_rolled_back_savepoint_drops_only_its_own_job(outside: Outside) -> None:
    kept, dropped = ref(), ref()
    with transaction.atomic():
        kept_id = soniq_sync.enqueue("testapp.record", args={"ref": kept})
        with pytest.raises(Boom), transaction.atomic():
            dropped_id = soniq_sync.enqueue("testapp.record", args={"ref": dropped})
            raise Boom
    assert outside.job(kept_id) is not None
    assert outside.job(dropped_id) is None


def test_enqueue_many_rolls_back_as_a_whole(outside: Outside) -> None:
    keys = [ref(), ref(), ref()]
    with pytest.raises(Boom), transaction.atomic():
        ids = soniq_sync.enqueue_many("testapp.record", [{"ref": k} for k in keys])
        raise Boom
    assert [outside.job(i) for i in ids] == [None, None, None]


def test_autocommit_switched_off_by_hand_is_a_transaction_too(outside: Outside) -> None:
    key = ref()
    transaction.set_autocommit(False)
    try:
        job_id = soniq_sync.enqueue("testapp.record", args={"ref": key})
        assert outside.job(job_id) is None
        transaction.rollback()
    finally:
        transaction.set_autocommit(True)
    assert outside.job(job_id) is None


def test_a_users_own_app_gets_the_same_behaviour(outside: Outside) -> None:
    app = soniq_sync.Soniq(soniq_sync.default_app().settings.database_url)
    app.job(name="testapp.own")(lambda ref: ref)
    try:
        for provider in (atomic_connection, atomic_connection_for("default")):
            app.connection_provider = provider
            key = ref()
            with pytest.raises(Boom), transaction.atomic():
                rolled_back = app.enqueue("testapp.own", args={"ref": key})
                raise Boom
            with transaction.atomic():
                committed = app.enqueue("testapp.own", args={"ref": key})
            assert outside.job(rolled_back) is None
            assert outside.job(committed) is not None
    finally:
        app.close()


def test_explicit_django_connection_in_atomic(outside: Outside) -> None:
    """connection=django.db.connection (the proxy) and connections[alias] both work."""
    key = ref()
    with pytest.raises(Boom), transaction.atomic():
        ids = [
            soniq_sync.enqueue("testapp.record", args={"ref": key}, connection=conn)
            for conn in (connection, connections["default"])
        ]
        raise Boom
    assert [outside.job(i) for i in ids] == [None, None]


def test_view_pattern_with_the_test_client(outside: Outside) -> None:
    client = Client(raise_request_exception=False)
    good, bad = ref(), ref()
    response = client.get(f"/orders/{good}/")
    assert response.status_code == 200
    job_id, task_id = response.content.decode().split()
    assert outside.job(job_id) is not None and outside.job(task_id) is not None
    assert outside.order_exists(good)

    assert client.get(f"/orders/{bad}/?fail=1").status_code == 500
    assert not outside.order_exists(bad)
    assert outside.jobs_with(ref=bad) == 0


@pytest.mark.django_db
def test_a_non_postgresql_connection_is_refused() -> None:
    with pytest.raises(SoniqError) as err:
        soniq_sync.enqueue("testapp.record", args={"ref": "x"}, connection=connections["sqlite"])
    assert err.value.code == UNSUPPORTED_CONNECTION
    assert "sqlite" in err.value.message


@pytest.mark.django_db
def test_a_proxy_that_is_not_a_database_is_refused() -> None:
    with pytest.raises(SoniqError) as err:
        soniq_sync.enqueue("testapp.record", args={"ref": "x"}, connection=cache)
    assert err.value.code == UNSUPPORTED_CONNECTION


@pytest.mark.django_db
def test_django_runs_on_the_driver_the_settings_ask_for() -> None:
    import os

    connection.ensure_connection()
    wanted = "psycopg2" if os.environ["DJANGO_SETTINGS_MODULE"].endswith("psycopg2") else "psycopg"
    assert type(connection.connection).__module__.partition(".")[0] == wanted
