"""Webhooks delivered by a real ``soniq worker`` process whose jobs module never touches
``app.webhooks``: the web process sends, any worker of the app delivers."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

import soniq_sync
from soniq import Soniq
from tests.acceptance.processes import start_soniq, until
from tests.webhook_receiver import Reply, receiver

SECRET = "process-secret"

JOBS_MODULES = {
    "async": "from soniq import Soniq\n\napp = Soniq()\n\n\n@app.job(name='shop.noop')\n"
    "async def noop() -> None: ...\n",
    "blocking": "from soniq_sync import Soniq\n\napp = Soniq()\n\n\n@app.job(name='shop.noop')\n"
    "def noop() -> None: ...\n",
}


@pytest.mark.parametrize("flavour", sorted(JOBS_MODULES))
async def test_a_worker_process_delivers_signed_webhooks_and_retries(
    tmp_path: Path, database_url: str, flavour: str
) -> None:
    (tmp_path / "shop_jobs.py").write_text(JOBS_MODULES[flavour])
    env = {
        "SONIQ_DATABASE_URL": database_url,
        "SONIQ_JOBS_MODULES": "shop_jobs",
        "SONIQ_POLL_INTERVAL": "0.2",
        "SONIQ_WEBHOOK_RETRY_DELAY": "0.05",
        "SONIQ_WEBHOOK_RETRY_MAX_DELAY": "0.1",
    }
    with receiver(SECRET) as hook:
        url = hook.on("/shop", Reply(502), Reply(200))
        worker = start_soniq(tmp_path, "worker", ["worker", "--concurrency", "2"], env)
        try:
            async with Soniq(database_url=database_url) as app:
                await app.webhooks.register(url, secret=SECRET)
                [delivery_id] = await app.webhooks.send("order.paid", {"flavour": flavour})

                async def delivered() -> bool:
                    row = await app.webhooks.delivery(delivery_id)
                    return row is not None and row["status"] == "delivered"

                await until(delivered, 30, "the delivery to be made", [worker])
                record = await app.webhooks.delivery(delivery_id)
            assert record is not None and record["attempts"] == 2
            first, second = hook.requests("/shop")
            assert first.verified and second.verified
            assert json.loads(second.body)["data"] == {"flavour": flavour}
        finally:
            if worker.alive():
                worker.proc.send_signal(signal.SIGTERM)
            code = await worker.wait_exit(30)
    assert code == 0, worker.describe()


def test_a_blocking_app_sends_what_a_worker_process_delivers(
    tmp_path: Path, database_url: str
) -> None:
    # The sending side is blocking too (a Django or Flask view); checked here without
    # a worker: the delivery job is queued under the reserved name, in the app's queue.
    app = soniq_sync.Soniq(database_url=database_url, webhook_queue="webhooks")
    try:
        app.webhooks.register("https://example.invalid/hook")
        [delivery_id] = app.webhooks.send("order.paid", {})
        record = app.webhooks.delivery(delivery_id)
        assert record is not None
        job = app.get_job(record["job_id"])
        assert job is not None
        assert (job["job_name"], job["queue"], job["status"]) == (
            "soniq.webhooks.deliver",
            "webhooks",
            "queued",
        )
    finally:
        app.close()
