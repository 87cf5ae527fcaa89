"""examples/flask, driven by Flask's test client on a fresh database.

A committed order comes with exactly one job; an order refused or crashed after its
job was enqueued leaves neither behind. Last, a real ``soniq worker --run-once`` process
started in the example's directory (as its README says) imports ``jobs`` and
confirms the order.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient

import soniq_sync

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "flask"
WORKER_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def example() -> Iterator[ModuleType]:
    """The example's ``app`` module, imported from its directory as ``flask run`` would."""
    sys.path.insert(0, str(EXAMPLE_DIR))
    try:
        module = importlib.import_module("app")
        assert Path(module.__file__ or "").parent == EXAMPLE_DIR, (
            f"imported another module named 'app': {module.__file__}"
        )
        yield module
    finally:
        sys.path.remove(str(EXAMPLE_DIR))


@pytest.fixture
def flask_app(example: ModuleType, database_url: str) -> Iterator[Flask]:
    default = soniq_sync.default_app()
    saved = default.settings  # create_app() configures the process-wide default app
    app: Flask = example.create_app(database_url)
    app.config["TESTING"] = True
    assert app.test_cli_runner().invoke(args=["init-db"]).exit_code == 0
    try:
        yield app
    finally:
        with app.app_context():
            example.db.engine.dispose()
        default.close()
        default.settings = saved


@pytest.fixture
def client(flask_app: Flask) -> FlaskClient:
    return flask_app.test_client()


def table(url: str, query: str) -> list[tuple[Any, ...]]:
    """Rows as another session sees them: committed data only."""
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query).fetchall()  # type: ignore[arg-type]


def test_an_order_commits_with_its_job(client: FlaskClient, database_url: str) -> None:
    response = client.post("/orders", json={"item": "tea", "quantity": 2})
    assert response.status_code == 201, response.text
    body = response.get_json()
    order_id, job_id = body["order"]["id"], body["job_id"]

    assert table(database_url, "SELECT id, item, quantity, confirmed FROM orders") == [
        (order_id, "tea", 2, False)
    ]
    assert table(database_url, "SELECT id::text, job_name, args, queue FROM soniq_jobs") == [
        (job_id, "shop.confirm_order", {"order_id": order_id}, "orders")
    ]


def test_a_refused_order_leaves_no_job(client: FlaskClient, database_url: str) -> None:
    """reserve_stock fails after the enqueue; the route rolls back order and job."""
    response = client.post("/orders", json={"item": "tea", "quantity": 1000})
    assert response.status_code == 409
    assert table(database_url, "SELECT * FROM orders") == []
    assert table(database_url, "SELECT * FROM soniq_jobs") == []


def test_a_crash_after_enqueue_leaves_no_job(
    client: FlaskClient, example: ModuleType, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected exception: nobody commits, and Flask-SQLAlchemy's teardown rolls
    back the session with the order and the job in it."""

    def crash(order: object) -> None:
        raise RuntimeError("payment provider down")

    monkeypatch.setattr(example, "reserve_stock", crash)
    with pytest.raises(RuntimeError, match="payment provider down"):
        client.post("/orders", json={"item": "tea", "quantity": 1})
    assert table(database_url, "SELECT * FROM orders") == []
    assert table(database_url, "SELECT * FROM soniq_jobs") == []

    monkeypatch.undo()
    assert client.post("/orders", json={"item": "tea", "quantity": 1}).status_code == 201
    assert len(table(database_url, "SELECT * FROM soniq_jobs")) == 1


def test_a_worker_confirms_the_order(
    client: FlaskClient, database_url: str, tmp_path: Path
) -> None:
    order_id = client.post("/orders", json={"item": "tea", "quantity": 3}).get_json()["order"]["id"]
    assert client.get(f"/orders/{order_id}").get_json()["confirmed"] is False

    env = {k: v for k, v in os.environ.items() if not k.startswith("SONIQ_")}
    env.update(SONIQ_DATABASE_URL=database_url, SONIQ_JOBS_MODULES="jobs")
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        result = subprocess.run(
            [sys.executable, "-m", "soniq", "worker", "--run-once"],
            cwd=EXAMPLE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=WORKER_TIMEOUT,
            check=False,
        )
    assert result.returncode == 0, log.read_text(errors="replace")

    assert table(database_url, "SELECT status FROM soniq_jobs") == [("done",)]
    assert client.get(f"/orders/{order_id}").get_json()["confirmed"] is True


def test_a_route_waits_for_the_confirmation_and_honours_its_timeout(
    client: FlaskClient, database_url: str, tmp_path: Path
) -> None:
    import time

    body = client.post("/orders", json={"item": "tea", "quantity": 1}).get_json()
    order_id, job_id = body["order"]["id"], body["job_id"]
    # No worker yet: the route gives up after its timeout and says so.
    started = time.monotonic()
    response = client.get(f"/orders/{order_id}/confirmation?job_id={job_id}&timeout=0.5")
    assert response.status_code == 504 and response.get_json()["status"] == "pending"
    assert 0.5 <= time.monotonic() - started < 10

    env = {k: v for k, v in os.environ.items() if not k.startswith("SONIQ_")}
    env.update(SONIQ_DATABASE_URL=database_url, SONIQ_JOBS_MODULES="jobs")
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "soniq", "worker"],
            cwd=EXAMPLE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        response = client.get(f"/orders/{order_id}/confirmation?job_id={job_id}&timeout=30")
        assert response.status_code == 200, log.read_text(errors="replace")
        assert response.get_json()["confirmed"] is True
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert table(database_url, "SELECT status, result FROM soniq_jobs") == [
        ("done", {"confirmed": order_id})
    ]
