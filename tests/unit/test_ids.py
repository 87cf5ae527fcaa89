"""Job ids are UUIDv7: valid UUIDs whose order follows creation time."""

from __future__ import annotations

import time
import uuid

from soniq.enqueue.ids import new_job_id


def test_ids_are_version_7_rfc_uuids() -> None:
    for _ in range(200):
        value = uuid.UUID(new_job_id())
        assert value.version == 7
        assert value.variant == uuid.RFC_4122


def test_ids_are_unique_and_sort_by_creation_millisecond() -> None:
    first = [new_job_id() for _ in range(1000)]
    time.sleep(0.002)  # a later millisecond; not synchronisation, the subject itself
    later = new_job_id()
    assert len(set(first)) == 1000
    assert later > max(first)
    stamp = int(later.replace("-", "")[:12], 16)
    assert abs(stamp - time.time_ns() // 1_000_000) < 5_000


def test_bulk_ids_increase_in_list_order() -> None:
    from soniq.enqueue.ids import new_job_ids

    for count in (1, 2, 1000, 70_000):  # 70,000 crosses the split of the sequence number
        ids = new_job_ids(count)
        assert ids == sorted(ids)
        assert len(set(ids)) == count
        for text in ids[:3] + ids[-3:]:
            value = uuid.UUID(text)
            assert (value.version, value.variant) == (7, uuid.RFC_4122)
            assert str(value) == text
    # Two batches in the same millisecond still differ (46 random bits per id).
    assert not set(new_job_ids(1000)) & set(new_job_ids(1000))
