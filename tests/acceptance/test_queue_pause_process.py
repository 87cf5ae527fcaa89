"""A fleet-wide pause against real ``soniq worker`` processes: workers that listen,
a worker that only polls, and a worker started after the pause."""

from __future__ import annotations

from soniq import Soniq
from tests.acceptance.test_worker_process import Spawner, job, spawner  # noqa: F401


async def test_no_worker_starts_a_paused_queue_until_it_is_resumed(
    spawner: Spawner,  # noqa: F811
    client: Soniq,
    database_url: str,
) -> None:
    listening = spawner.start(database_url, "--concurrency", "4")
    polling = spawner.start(database_url, "--concurrency", "4", SONIQ_LISTEN_NOTIFY="false")
    for worker in (listening, polling):
        await worker.wait_log("started", timeout=30)
    await client.queues.pause("held", reason="incident")

    held = [
        await client.enqueue("t.record", args={"key": f"held-{i}"}, queue="held") for i in range(4)
    ]
    for i in range(8):
        await client.enqueue("t.record", args={"key": f"free-{i}"}, queue="free")
    await spawner.until(
        lambda: all(spawner.marked(f"done-free-{i}") for i in range(8)),
        30,
        "the other queue's jobs to run on both workers",
    )
    # A worker started after the pause never claims the queue either.
    late = spawner.start(database_url, "--concurrency", "4")
    await late.wait_log("started", timeout=30)
    marker = await client.enqueue("t.record", args={"key": "after-late"}, queue="free")
    await spawner.until(lambda: spawner.marked("done-after-late"), 30, "the marker job")
    assert (await job(client, marker))["status"] == "done"
    for job_id in held:
        row = await job(client, job_id)
        assert (row["status"], row["attempts"]) == ("queued", 0)
    assert not any(spawner.marked(f"done-held-{i}") for i in range(4))

    assert await client.queues.resume("held") is True
    await spawner.until(
        lambda: all(spawner.marked(f"done-held-{i}") for i in range(4)),
        30,
        "the held jobs to run after the resume",
    )
    for job_id in held:
        assert (await job(client, job_id))["attempts"] == 1
