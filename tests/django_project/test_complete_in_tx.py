"""Jobs that commit their done with their Django writes, run by `soniq worker`:
``transactional="django"`` (the handler in ``transaction.atomic()``) and an explicit
``ctx.complete_sync(connection)`` inside the handler's own atomic block."""

from __future__ import annotations

import uuid

import soniq_sync
from tests.django_project.conftest import Outside, Worker
from tests.helpers import wait_for_sync


def settled(outside: Outside, job_id: str, worker: Worker) -> tuple[str, object]:
    """Wait until the job is done or dead-lettered; its (status, result)."""

    def state() -> tuple[str, object] | None:
        row = outside.conn.execute(
            "SELECT status, result FROM soniq_jobs WHERE id = %s AND status = 'done' "
            "UNION ALL SELECT 'dead_letter', NULL FROM soniq_dead_letter_jobs WHERE id = %s",
            (job_id, job_id),
        ).fetchone()
        return None if row is None else (row[0], row[1])

    try:
        wait_for_sync(lambda: state() is not None, timeout=30, message=f"job {job_id}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{worker.describe()}") from None
    found = state()
    assert found is not None
    return found


def test_a_django_transactional_job_commits_its_orders_with_its_done(
    outside: Outside, worker: Worker
) -> None:
    ok, boom = uuid.uuid4().hex, "boom" + uuid.uuid4().hex
    ok_id = soniq_sync.enqueue("testapp.charge_atomic", args={"ref": ok})
    boom_id = soniq_sync.enqueue("testapp.charge_atomic", args={"ref": boom})
    assert settled(outside, ok_id, worker) == ("done", ok)
    assert outside.order_exists(ok)
    assert settled(outside, boom_id, worker) == ("dead_letter", None)
    assert not outside.order_exists(boom)  # rolled back with the attempt


def test_complete_sync_on_djangos_connection_commits_with_the_atomic_block(
    outside: Outside, worker: Worker
) -> None:
    ok, boom = uuid.uuid4().hex, "boom" + uuid.uuid4().hex
    ok_id = soniq_sync.enqueue("testapp.charge_explicit", args={"ref": ok})
    boom_id = soniq_sync.enqueue("testapp.charge_explicit", args={"ref": boom})
    assert settled(outside, ok_id, worker) == ("done", {"ref": ok})
    assert outside.order_exists(ok)
    assert settled(outside, boom_id, worker) == ("dead_letter", None)
    assert not outside.order_exists(boom)


def test_a_view_waits_for_its_job_and_honours_its_timeout(outside: Outside, worker: Worker) -> None:
    import time

    from django.test import Client

    client = Client()
    ref = uuid.uuid4().hex
    response = client.get(f"/charge/{ref}/")
    assert response.status_code == 200, worker.describe()
    job_id, result = response.content.decode().split()
    assert result == ref and outside.order_exists(ref)
    assert outside.job(job_id) is not None  # the job the view enqueued, done
    # No worker serves "parked": the wait gives up after its timeout, the job stays.
    started = time.monotonic()
    response = client.get(f"/charge/{uuid.uuid4().hex}/?queue=parked&timeout=0.5")
    assert response.status_code == 504
    assert 0.5 <= time.monotonic() - started < 10
    parked = outside.job(response.content.decode())
    assert parked is not None
