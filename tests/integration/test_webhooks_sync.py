"""The blocking app's webhooks (soniq_sync, generated): the same calls, blocking."""

from __future__ import annotations

import json

import psycopg

import soniq_sync
from soniq_sync.webhooks import WebhookService
from tests.webhook_receiver import Reply, receiver

SECRET = "sync-secret"


def test_a_blocking_app_sends_a_signed_webhook_its_worker_delivers(
    sync_app: soniq_sync.Soniq,
) -> None:
    assert isinstance(sync_app.webhooks, WebhookService)
    with receiver(SECRET) as hook:
        sync_app.webhooks.register(hook.on("/sync", Reply(200)), secret=SECRET)
        [delivery_id] = sync_app.webhooks.send("invoice.sent", {"invoice": 3})
        assert sync_app.run_worker(run_once=True) is True
        [request] = hook.requests("/sync")
        assert request.verified is True
        assert json.loads(request.body)["data"] == {"invoice": 3}
        record = sync_app.webhooks.delivery(delivery_id)
        assert record is not None
        assert (record["status"], record["response_status"]) == ("delivered", 200)


def test_a_blocking_send_in_a_rolled_back_transaction_leaves_nothing(
    sync_app: soniq_sync.Soniq, database_url: str
) -> None:
    sync_app.webhooks.register("https://example.invalid/hook")
    with psycopg.connect(database_url) as conn:
        assert len(sync_app.webhooks.send("invoice.sent", {}, connection=conn)) == 1
        conn.rollback()
    assert sync_app.webhooks.deliveries() == []
    assert sync_app.list_jobs() == []
