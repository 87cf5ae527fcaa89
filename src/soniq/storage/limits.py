"""``store.limits``: the rows behind concurrency and rate limits (PostgreSQL only).

Groups (``soniq_limit_groups``) hold each group's limits, as the code declares them
or as an operator set them; keys (``soniq_limit_keys``) hold a key's rate state and
blocks. Occupancy is never stored: it is the count of a key's ``processing`` rows.
``soniq_sync/storage/limits.py`` is generated from this file.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from soniq.storage.area import StoreAccess

Record = dict[str, Any]


class Limits:
    """Declare, set, clear and list limit groups; block keys; prune idle key state."""

    def __init__(self, store: StoreAccess) -> None:
        self._store = store

    async def _fetch(self, name: str, params: Mapping[str, Any]) -> builtins.list[Record]:
        backend = await self._store.ready()
        rows = await backend.fetch(backend.dialect.queries[name], params)
        for row in rows:
            row.pop("_woken", None)
        return rows

    async def declare(self, groups: Sequence[Record]) -> None:
        """Write what code declares (``name``, ``concurrency``, ``rate_limit``,
        ``rate_period``, ``burst`` per group), keeping an operator's runtime limits."""
        if not groups:
            return
        ordered = sorted(groups, key=lambda g: g["name"])
        await self._fetch(
            "limit_groups_declare",
            {
                field: [g[key] for g in ordered]
                for field, key in (
                    ("names", "name"),
                    ("concurrency", "concurrency"),
                    ("rate_limit", "rate_limit"),
                    ("rate_period", "rate_period"),
                    ("burst", "burst"),
                )
            },
        )

    async def set(
        self,
        name: str,
        concurrency: int | None,
        rate_limit: int | None,
        rate_period: float | None,
        burst: int,
    ) -> Record:
        """An operator's limits for group ``name``, winning over the code's; the row."""
        params = {
            "name": name,
            "concurrency": concurrency,
            "rate_limit": rate_limit,
            "rate_period": rate_period,
            "burst": burst,
        }
        return (await self._fetch("limit_group_set", params))[0]

    async def clear(self, name: str) -> bool:
        """Drop an operator's limits for ``name``; False if the group was unknown."""
        return bool(await self._fetch("limit_group_clear", {"name": name}))

    async def block(self, key: str, seconds: float) -> Record:
        """Hold ``key`` back for ``seconds`` (a longer block in force is kept)."""
        return (await self._fetch("limit_key_block", {"key": key, "seconds": seconds}))[0]

    async def unblock(self, key: str) -> bool:
        """Lift a block on ``key``; False if none was in force."""
        return bool(await self._fetch("limit_key_unblock", {"key": key}))

    async def list(self) -> builtins.list[Record]:
        """Every group: name, concurrency, rate_limit, rate_period, burst, source
        (``code``, ``runtime``, or ``missing`` for jobs whose group has no row),
        declared, updated_at, running, queued."""
        return await self._fetch("limit_list", {})

    async def keys(self, group: str | None, limit: int) -> builtins.list[Record]:
        """The busiest keys (of ``group``, None: all): key, group, running, queued,
        blocked_until."""
        return await self._fetch("limit_keys_top", {"group": group, "limit": limit})

    async def waiting(self) -> bool:
        """Whether any limited job is due (a cheap probe)."""
        return bool((await self._fetch("limited_waiting", {}))[0]["found"])

    async def prune(self, ttl: float) -> None:
        """Forget key state idle for ``ttl`` seconds."""
        await self._fetch("limit_keys_prune", {"ttl": ttl})
