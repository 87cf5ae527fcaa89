"""A Flask shop whose orders and their follow-up jobs commit together.

    flask --app app init-db
    flask --app app run

POST /orders writes the order through Flask-SQLAlchemy and enqueues ``confirm_order``
with ``connection=db.session``: the job row goes into the session's transaction, so it
exists exactly when the order does.
"""

from __future__ import annotations

import os
from typing import Any

import click
import soniq_sync
from flask import Flask, abort, request

from jobs import confirm_order
from models import Order, db, sqlalchemy_url

#: The most of one item a single order may take (see reserve_stock).
MAX_QUANTITY = 10


class OutOfStock(Exception):
    pass


def reserve_stock(order: Order) -> None:
    """Stands in for a step that can still fail after the job was enqueued (a stock
    check, a payment call). When it fails, the rollback removes the job too."""
    if order.quantity > MAX_QUANTITY:
        raise OutOfStock(f"only {MAX_QUANTITY} of {order.item!r} left")


def create_app(database_url: str | None = None) -> Flask:
    """The Flask app, on ``database_url`` or else $SONIQ_DATABASE_URL."""
    url = database_url or os.environ["SONIQ_DATABASE_URL"]
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = sqlalchemy_url(url)
    db.init_app(app)
    # Only needed for enqueues without connection= (they use Soniq's own pool);
    # everything below writes through db.session instead.
    soniq_sync.configure(database_url=url)

    @app.post("/orders")
    def create_order() -> tuple[dict[str, Any], int]:
        data = request.get_json(force=True)
        order = Order(item=str(data["item"]), quantity=int(data["quantity"]))
        db.session.add(order)
        db.session.flush()  # sends the INSERT now, so order.id is known
        job_id = soniq_sync.enqueue(confirm_order, order_id=order.id, connection=db.session)
        try:
            reserve_stock(order)
        except OutOfStock as exc:
            db.session.rollback()  # the order and its job disappear together
            return {"error": str(exc)}, 409
        db.session.commit()  # the order and its job become visible together
        return {"order": order.as_dict(), "job_id": job_id}, 201

    @app.get("/orders/<int:order_id>")
    def show_order(order_id: int) -> dict[str, Any]:
        order = db.session.get(Order, order_id)
        if order is None:
            abort(404)
        return order.as_dict()

    @app.get("/orders/<int:order_id>/confirmation")
    def wait_for_confirmation(order_id: int) -> tuple[dict[str, Any], int]:
        """Wait (blocking, up to ?timeout= seconds) for the order's confirmation job,
        named by ?job_id=: 200 with the order once it is done, 504 if it is not yet
        (the job goes on)."""
        job_id = request.args["job_id"]
        try:
            soniq_sync.handle(job_id).result(timeout=float(request.args.get("timeout", 10)))
        except TimeoutError:
            return {"job_id": job_id, "status": "pending"}, 504
        order = db.session.get(Order, order_id)
        if order is None:
            abort(404)
        return order.as_dict(), 200

    @app.cli.command("init-db")
    def init_db() -> None:
        """Create the shop's tables (run `soniq setup` for Soniq's)."""
        db.create_all()
        click.echo("Created the orders table.")

    return app
