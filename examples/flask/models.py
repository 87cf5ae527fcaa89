"""The shop's one table, declared once for the web app and the worker.

``db`` is Flask-SQLAlchemy's extension object. Its models are ordinary SQLAlchemy
declarative classes, so the worker (which runs no Flask app) can load them with a plain
``Session``.
"""

from __future__ import annotations

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)


class Order(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    item: Mapped[str]
    quantity: Mapped[int]
    confirmed: Mapped[bool] = mapped_column(default=False)

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "item": self.item,
            "quantity": self.quantity,
            "confirmed": self.confirmed,
        }


def sqlalchemy_url(database_url: str) -> str:
    """SONIQ_DATABASE_URL (``postgresql://...``) for SQLAlchemy's psycopg 3 dialect.

    Soniq already installs psycopg 3. Plain ``postgresql://`` would make SQLAlchemy
    look for psycopg2, which Soniq supports as well, but you would have to install it.
    """
    return make_url(database_url).set(drivername="postgresql+psycopg").render_as_string(False)
