"""The blocking twin ``soniq_sync.Soniq`` on every backend, where it differs from the
async app: its worker runs an async handler too.

Most of the blocking app's behaviour tests are generated from the async ones into
tests/behaviour/sync/ by ``tools/async_to_sync.py``.
"""

from __future__ import annotations

import soniq_sync


def test_run_worker_runs_its_jobs(backend_sync_app: soniq_sync.Soniq) -> None:
    app = backend_sync_app

    @app.job()
    def square(n: int) -> int:
        return n * n

    @app.job(retries=0)
    async def fails() -> None:
        raise RuntimeError("nope")

    ids = [app.enqueue(square, n=n) for n in range(4)]
    broken = app.enqueue(fails)
    assert app.run_worker(run_once=True, concurrency=2) is True
    assert [app.get_result(i) for i in ids] == [0, 1, 4, 9]
    assert {j["status"] for j in app.list_jobs()} == {"done"}
    assert app.dead_letter.count() == 1
    dead = app.get_job(broken)
    assert dead is not None and dead["status"] == "dead_letter"
    assert app.run_worker(run_once=True) is False
