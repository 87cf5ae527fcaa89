"""The interface every connection adapter implements.

``soniq_sync/adapters/base.py`` is generated from this file.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

from soniq.adapters.copy_format import Row, Shared
from soniq.storage.dialect import POSTGRES, Dialect
from soniq.storage.queries import Query
from soniq.storage.records import BulkStatements


class AsyncAdapter(ABC):
    """Runs Soniq's queries on one connection owned by someone else.

    It writes inside whatever transaction the caller has open, and never begins,
    commits or rolls one back. The store gives it the queries of its ``dialect``.
    """

    #: The database this adapter's connection talks to (PostgreSQL unless overridden).
    dialect: ClassVar[Dialect] = POSTGRES

    @abstractmethod
    async def fetch(self, query: Query, params: dict[str, Any]) -> list[Row]:
        """Execute ``query``, which returns rows, and return them as tuples."""

    @abstractmethod
    async def execute(self, query: Query, params: dict[str, Any]) -> None:
        """Execute ``query`` and ignore whatever it returns."""

    @abstractmethod
    async def copy_jobs(
        self, bulk: BulkStatements, ids: Sequence[str], args: Sequence[str], shared: Shared
    ) -> None:
        """Bulk-write one row per (id, args JSON), each with the ``shared`` values.

        Without a ``scheduled_at`` in ``shared``, rows take the server's clock.
        """
