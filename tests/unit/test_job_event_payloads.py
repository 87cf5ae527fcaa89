"""Events of watched jobs are packed into NOTIFY payloads under the server's limit."""

from __future__ import annotations

import uuid

from soniq.storage.jobs import MAX_EVENTS_PAYLOAD, event_payloads


def test_events_pack_into_payloads_under_the_limit_in_order() -> None:
    events = [("d" if i % 2 else "p", str(uuid.uuid4())) for i in range(1000)]
    payloads = event_payloads(events)
    assert len(payloads) > 1
    assert all(len(p.encode()) <= MAX_EVENTS_PAYLOAD for p in payloads)
    items = [item for p in payloads for item in p.split(",")]
    assert items == [f"{kind}:{job_id}" for kind, job_id in events]


def test_no_events_is_no_payload() -> None:
    assert event_payloads([]) == []
    assert event_payloads([("s", "x")]) == ["s:x"]
