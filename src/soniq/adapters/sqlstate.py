"""The SQLSTATE of a database error, whichever driver raised it."""

from __future__ import annotations


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a database error from any driver, or None.

    psycopg and asyncpg name it ``sqlstate``, psycopg2 ``pgcode``; SQLAlchemy wraps the
    driver's error in ``orig``.
    """
    for err in (exc, getattr(exc, "orig", None)):
        code = getattr(err, "sqlstate", None) or getattr(err, "pgcode", None)
        if isinstance(code, str):
            return code
    return None
