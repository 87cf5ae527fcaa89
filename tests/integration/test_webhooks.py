"""Webhook delivery end to end: app.webhooks, a real worker, real PostgreSQL and a real
HTTP receiver on 127.0.0.1 (tests/webhook_receiver.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet

from soniq import Soniq
from soniq.errors import (
    ARGS_NOT_SERIALIZABLE,
    INVALID_WEBHOOK,
    NOT_SUPPORTED_BY_BACKEND,
    SoniqError,
)
from soniq.features.webhooks import WebhookService as OriginalPathService
from soniq.webhooks import DELIVER_TASK, WebhookEvent, WebhookService, verify_webhook_signature
from tests.helpers import wait_for
from tests.webhook_receiver import HANG, Receiver, Reply, receiver

SECRET = "whsec-test-3f9a"
FAST = {"webhook_retry_delay": 0.05, "webhook_retry_max_delay": 0.1, "poll_interval": 0.1}


async def sql(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(query.encode(), params)
        return await cur.fetchall() if cur.description else []


@asynccontextmanager
async def running_worker(app: Soniq) -> AsyncIterator[None]:
    """A worker of ``app`` running in the background for the block."""
    await app.ensure_initialized()
    worker = app.worker()
    task = asyncio.create_task(worker.run())
    try:
        yield
    finally:
        worker.stop()
        await asyncio.wait_for(task, 15)


async def finished(app: Soniq, delivery_id: str) -> dict[str, Any] | None:
    """The delivery once it is no longer pending, else None."""
    row = await app.webhooks.delivery(delivery_id)
    return row if row is not None and row["status"] != "pending" else None


@pytest.fixture
def hook() -> Any:
    with receiver(SECRET) as server:
        yield server


async def test_a_signed_event_reaches_the_receiver_that_verifies_it(
    database_url: str, hook: Receiver
) -> None:
    async with Soniq(database_url=database_url, **FAST) as app:
        url = hook.on("/orders", Reply(200, body='{"thanks": 1}'))
        endpoint = await app.webhooks.register(url, events=["order.paid"], secret=SECRET)
        await app.webhooks.register(hook.on("/other", Reply(200)), events=["order.refunded"])

        [delivery_id] = await app.webhooks.send(
            "order.paid", {"order": 7}, metadata={"source": "test"}
        )
        assert await app.run_worker(run_once=True) is True

        [request] = hook.requests("/orders")
        assert request.verified is True
        assert hook.requests("/other") == []
        headers = request.headers
        assert headers["x-webhook-event"] == "order.paid"
        assert headers["x-webhook-delivery"] == delivery_id
        assert headers["x-webhook-signature"].startswith("sha256=")
        assert headers["content-type"] == "application/json"
        assert abs(int(headers["x-webhook-timestamp"]) - time.time()) < 60
        body = json.loads(request.body)
        assert (body["event"], body["data"], body["metadata"]) == (
            "order.paid",
            {"order": 7},
            {"source": "test"},
        )
        # Any change to the bytes, the timestamp or the secret breaks the signature.
        sig, stamp = headers["x-webhook-signature"], headers["x-webhook-timestamp"]
        assert not verify_webhook_signature(request.body + b" ", sig, SECRET, timestamp=stamp)
        assert not verify_webhook_signature(request.body, sig, "other", timestamp=stamp)
        assert not verify_webhook_signature(request.body, sig, SECRET, timestamp=int(stamp) + 1)

        record = await app.webhooks.delivery(delivery_id)
        assert record is not None
        assert (record["status"], record["attempts"], record["endpoint_id"]) == (
            "delivered",
            1,
            endpoint,
        )
        assert (record["response_status"], record["response_body"]) == (200, '{"thanks": 1}')
        result = await app.get_result(record["job_id"])
        assert result["status_code"] == 200
        assert result["body"] == '{"thanks": 1}'
        assert result["delivered"] is True
        assert result["duration_ms"] > 0
        stats = await app.webhooks.get_delivery_stats()
        assert (stats["total"], stats["delivered"], stats["success_rate"]) == (1, 1, 1.0)


async def test_a_500_is_retried_and_the_retry_delivers_the_same_request(
    database_url: str, hook: Receiver
) -> None:
    async with Soniq(database_url=database_url, **FAST) as app:
        url = hook.on("/flaky", Reply(500, body="boom"), Reply(200))
        await app.webhooks.register(url, secret=SECRET)
        [delivery_id] = await app.webhooks.send(WebhookEvent.JOB_COMPLETED, {"job": "x"})
        async with running_worker(app):
            record = await wait_for(lambda: finished(app, delivery_id), message="delivered")
        assert (record["status"], record["attempts"], record["response_status"]) == (
            "delivered",
            2,
            200,
        )
        first, second = hook.requests("/flaky")
        assert first.body == second.body
        assert first.headers["x-webhook-delivery"] == second.headers["x-webhook-delivery"]
        assert first.verified and second.verified
        result = await app.get_result(record["job_id"])
        assert (result["attempt"], result["status_code"]) == (2, 200)


async def test_a_404_is_not_retried_and_the_job_is_dead_lettered(
    database_url: str, hook: Receiver
) -> None:
    async with Soniq(database_url=database_url, **FAST) as app:
        await app.webhooks.register(hook.on("/gone", Reply(404, body="no such hook")))
        [delivery_id] = await app.webhooks.send("order.paid", {})
        record = await app.webhooks.delivery(delivery_id)
        assert record is not None
        async with running_worker(app):
            dead = await wait_for(lambda: app.dead_letter.list(job_name=DELIVER_TASK))
        assert len(hook.requests("/gone")) == 1
        [letter] = dead
        assert letter["id"] == record["job_id"]
        assert "SONIQ_WEBHOOK_DELIVERY_FAILED" in letter["last_error"]
        assert "HTTP 404" in letter["last_error"] and "not retried" in letter["last_error"]
        record = await app.webhooks.delivery(delivery_id)
        assert record is not None
        assert (record["status"], record["attempts"], record["response_status"]) == (
            "failed",
            1,
            404,
        )
        assert record["response_body"] == "no such hook"


async def test_replaying_a_failed_delivery_sends_it_again(
    database_url: str, hook: Receiver
) -> None:
    async with Soniq(database_url=database_url, **FAST) as app:
        await app.webhooks.register(hook.on("/fixed", Reply(410), Reply(200)), max_retries=0)
        [delivery_id] = await app.webhooks.send("order.paid", {"n": 1})
        await app.run_worker(run_once=True)
        [letter] = await app.dead_letter.list(job_name=DELIVER_TASK)
        failed = await app.webhooks.delivery(delivery_id)
        assert failed is not None and failed["status"] == "failed"

        new_job = await app.dead_letter.replay(letter["id"])
        await app.run_worker(run_once=True)
        record = await app.webhooks.delivery(delivery_id)
        assert record is not None
        assert (record["status"], record["attempts"], record["job_id"]) == (
            "delivered",
            1,
            new_job,
        )
        first, second = hook.requests("/fixed")
        assert first.body == second.body
        assert second.headers["x-webhook-delivery"] == delivery_id


async def test_a_timeout_is_retried(database_url: str, hook: Receiver) -> None:
    async with Soniq(database_url=database_url, **FAST) as app:
        url = hook.on("/slow", HANG, Reply(200))
        await app.webhooks.register(url, timeout_seconds=0.5)
        [delivery_id] = await app.webhooks.send("order.paid", {"n": 1})
        async with running_worker(app):
            record = await wait_for(lambda: finished(app, delivery_id), message="delivered")
        assert (record["status"], record["attempts"]) == ("delivered", 2)
        assert len(hook.requests("/slow")) == 2


async def test_a_429_waits_for_retry_after(database_url: str, hook: Receiver) -> None:
    async with Soniq(database_url=database_url, **FAST) as app:
        url = hook.on("/busy", Reply(429, {"Retry-After": "1"}), Reply(204, body=""))
        await app.webhooks.register(url)
        [delivery_id] = await app.webhooks.send("order.paid", {})
        started = time.monotonic()
        async with running_worker(app):
            record = await wait_for(lambda: finished(app, delivery_id), message="delivered")
        assert (record["status"], record["attempts"], record["response_status"]) == (
            "delivered",
            2,
            204,
        )
        # The backoff alone would have retried within 0.1 s.
        assert time.monotonic() - started >= 0.95


async def test_retries_stop_after_max_retries(database_url: str, hook: Receiver) -> None:
    async with Soniq(database_url=database_url, **FAST) as app:
        await app.webhooks.register(hook.on("/down", Reply(503)), max_retries=2)
        [delivery_id] = await app.webhooks.send("order.paid", {})
        async with running_worker(app):
            record = await wait_for(lambda: finished(app, delivery_id), message="given up")
            [letter] = await wait_for(lambda: app.dead_letter.list(job_name=DELIVER_TASK))
        assert (record["status"], record["attempts"], record["last_error"]) == (
            "failed",
            3,
            "HTTP 503",
        )
        assert len(hook.requests("/down")) == 3
        assert "failed all 3 attempts" in letter["last_error"]


async def test_send_in_a_rolled_back_transaction_leaves_no_delivery(
    database_url: str, hook: Receiver
) -> None:
    async with Soniq(database_url=database_url, **FAST) as app:
        await app.webhooks.register(hook.on("/tx", Reply(200)))
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            ids = await app.webhooks.send("order.paid", {"n": 1}, connection=conn)
            assert len(ids) == 1
            await conn.rollback()
        assert await app.webhooks.deliveries() == []
        assert await sql(database_url, "SELECT count(*) FROM soniq_jobs") == [(0,)]

        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            [kept] = await app.webhooks.send("order.paid", {"n": 2}, connection=conn)
            await conn.commit()
        assert await app.run_worker(run_once=True) is True
        record = await app.webhooks.delivery(kept)
        assert record is not None and record["status"] == "delivered"
        [request] = hook.requests("/tx")
        assert json.loads(request.body)["data"] == {"n": 2}


async def test_secrets_are_encrypted_at_rest_with_a_key(database_url: str, hook: Receiver) -> None:
    key = Fernet.generate_key().decode()
    async with Soniq(database_url=database_url, webhook_secret_key=key) as app:
        await app.webhooks.register(hook.on("/enc", Reply(200)), secret=SECRET)
        [(stored,)] = await sql(database_url, "SELECT secret FROM soniq_webhook_endpoints")
        assert stored.startswith("fernet:") and SECRET not in stored
        [endpoint] = await app.webhooks.list()
        assert endpoint.signed is True
        await app.webhooks.send("order.paid", {})
        await app.run_worker(run_once=True)
        [request] = hook.requests("/enc")
        assert request.verified is True

    # A worker without the key can't sign: the delivery fails at once, saying why.
    async with Soniq(database_url=database_url) as app:
        [delivery_id] = await app.webhooks.send("order.paid", {})
        await app.run_worker(run_once=True)
        record = await app.webhooks.delivery(delivery_id)
        assert record is not None and record["status"] == "failed"
        assert "SONIQ_WEBHOOK_SECRET_KEY is not set" in record["last_error"]
        assert len(hook.requests("/enc")) == 1


async def test_without_a_key_secrets_are_stored_as_given(database_url: str) -> None:
    async with Soniq(database_url=database_url) as app:
        await app.webhooks.register("https://example.invalid/hook", secret=SECRET)
        [(stored,)] = await sql(database_url, "SELECT secret FROM soniq_webhook_endpoints")
        assert stored == "plain:" + SECRET


async def test_register_list_and_unregister(database_url: str, hook: Receiver) -> None:
    async with Soniq(database_url=database_url) as app:
        endpoint_id = await app.webhooks.register(
            hook.on("/x", Reply(200)),
            events=[WebhookEvent.JOB_FAILED, "custom.event"],
            max_retries=5,
            timeout_seconds=2,
            headers={"Authorization": "Bearer t"},
        )
        [endpoint] = await app.webhooks.list()
        assert endpoint.id == endpoint_id
        assert endpoint.events == ("job.failed", "custom.event")
        assert (endpoint.max_retries, endpoint.timeout_seconds) == (5, 2.0)
        assert endpoint.headers == {"Authorization": "Bearer t"}
        assert endpoint.signed is False
        assert await app.webhooks.get(endpoint_id) == endpoint

        # Unregistering drops its pending deliveries: their jobs send nothing.
        [delivery_id] = await app.webhooks.send("custom.event", {})
        assert await app.webhooks.unregister(endpoint_id) is True
        assert await app.webhooks.unregister(endpoint_id) is False
        assert await app.webhooks.delivery(delivery_id) is None
        await app.run_worker(run_once=True)
        assert hook.requests("/x") == []
        assert await app.webhooks.send("custom.event", {}) == []


async def test_inactive_endpoints_receive_nothing(database_url: str) -> None:
    async with Soniq(database_url=database_url) as app:
        await app.webhooks.register("https://example.invalid/hook", active=False)
        assert await app.webhooks.send("order.paid", {}) == []
        assert await sql(database_url, "SELECT count(*) FROM soniq_jobs") == [(0,)]


BAD_REGISTRATIONS: list[dict[str, Any]] = [
    {"url": "ftp://example.com/x"},
    {"url": "/relative"},
    {"url": "https://example.com", "events": "order.paid"},
    {"url": "https://example.com", "events": []},
    {"url": "https://example.com", "secret": ""},
    {"url": "https://example.com", "max_retries": -1},
    {"url": "https://example.com", "timeout_seconds": 0},
    {"url": "https://example.com", "headers": {"X-Webhook-Event": "x"}},
    {"url": "https://example.com", "headers": {"X-A": "b\r\nc"}},
]


async def test_bad_registrations_raise_and_write_nothing(database_url: str) -> None:
    async with Soniq(database_url=database_url) as app:
        for call in BAD_REGISTRATIONS:
            with pytest.raises(SoniqError) as err:
                await app.webhooks.register(**call)
            assert err.value.code == INVALID_WEBHOOK, call
            assert isinstance(err.value, ValueError), call
        assert await app.webhooks.list() == []


async def test_bad_events_raise_and_write_nothing(database_url: str) -> None:
    async with Soniq(database_url=database_url) as app:
        await app.webhooks.register("https://example.invalid/hook")
        with pytest.raises(SoniqError) as err:
            await app.webhooks.send("", {})
        assert err.value.code == INVALID_WEBHOOK
        with pytest.raises(SoniqError) as err:
            await app.webhooks.send("order.paid", {"when": object()})
        assert err.value.code == ARGS_NOT_SERIALIZABLE
        assert await app.webhooks.deliveries() == []
        assert await sql(database_url, "SELECT count(*) FROM soniq_jobs") == [(0,)]


async def test_the_memory_backend_says_webhooks_need_postgres() -> None:
    app = Soniq(backend="memory")
    with pytest.raises(SoniqError) as err:
        await app.webhooks.register("https://example.com/hook")
    assert err.value.code == NOT_SUPPORTED_BY_BACKEND


async def test_the_original_import_path_and_names_work(database_url: str, hook: Receiver) -> None:
    assert OriginalPathService is WebhookService
    async with Soniq(database_url=database_url) as app:
        await app.webhooks.start()
        await app.webhooks.register(hook.on("/legacy", Reply(200)), secret=SECRET)
        [delivery_id] = await app.webhooks.send_webhook("job.completed", {"a": 1})
        await app.run_worker(run_once=True)
        assert (await finished(app, delivery_id) or {}).get("status") == "delivered"
        await app.webhooks.stop()


async def test_queued_deliveries_count_as_registered_tasks(database_url: str) -> None:
    async with Soniq(database_url=database_url) as sender:
        await sender.webhooks.register("https://example.invalid/hook")
        assert len(await sender.webhooks.send("order.paid", {})) == 1
    # Another process's app that never touched app.webhooks: its workers serve them too.
    async with Soniq(database_url=database_url) as other:
        assert DELIVER_TASK not in other.registry
        assert await other.unregistered_tasks() == []
        other.worker()
        assert DELIVER_TASK in other.registry


async def test_send_on_a_connection_to_a_database_without_the_tables_says_so(
    empty_database_url: str,
) -> None:
    async with Soniq(database_url=empty_database_url) as app:
        async with await psycopg.AsyncConnection.connect(empty_database_url) as conn:
            with pytest.raises(SoniqError) as err:
                await app.webhooks.send("order.paid", {}, connection=conn)
        assert err.value.code == "SONIQ_SCHEMA_MISSING"
        with pytest.raises(SoniqError) as err:
            await app.webhooks.register("https://example.invalid/hook")
        assert err.value.code == "SONIQ_SCHEMA_MISSING"
