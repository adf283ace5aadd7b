"""The lease table of a single process (the memory store): the same rules as PostgreSQL's
(engine/store/pg_leases.py) on the injected clock, so the conformance tests hold for both.

Why a real implementation and not nothing: the memory store is one process, so there is nobody
to fence off, and its units need no fence (`fence_unit` is not called by the memory store); but
the lease manager runs unchanged on it (the simulator, the unit tests), and the table's rules
(takeover bumps the epoch, expiry on the store's clock) are tested once for both stores.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from engine.leases import Grant, LeaseRow
from engine.ports import Clock


@attrs.define
class _Row:
    owner: str | None = None
    epoch: int = 0
    expires_ms: int = -1


class MemoryLeases:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._rows: dict[int, _Row] = {}
        self._members: dict[str, tuple[str, int]] = {}

    def _live(self, expires_ms: int) -> bool:
        return expires_ms > self._clock.now_ms()

    def _until(self, ttl_s: float) -> int:
        return self._clock.now_ms() + round(ttl_s * 1000)

    async def ensure_partitions(self, partitions: int) -> None:
        for p in range(partitions):
            self._rows.setdefault(p, _Row())

    async def join(self, me: str, url: str, ttl_s: float) -> int:
        self._members[me] = (url, self._until(ttl_s))
        for gone in [m for m, (_, e) in self._members.items() if not self._live(e)]:
            del self._members[gone]
        return len(self._members)

    async def renew(self, me: str, held: Sequence[int], ttl_s: float) -> list[Grant]:
        grants = []
        for p in sorted(set(held)):
            row = self._rows.get(p)
            if row is not None and row.owner == me:
                row.expires_ms = self._until(ttl_s)
                grants.append(Grant(p, row.epoch))
        return grants

    async def acquire(self, me: str, count: int, ttl_s: float) -> list[Grant]:
        grants: list[Grant] = []
        for p in sorted(self._rows):
            if len(grants) >= count:
                break
            row = self._rows[p]
            if row.owner is None or not self._live(row.expires_ms):
                row.owner, row.epoch, row.expires_ms = me, row.epoch + 1, self._until(ttl_s)
                grants.append(Grant(p, row.epoch))
        return grants

    async def release(self, me: str, partitions: Sequence[int]) -> None:
        for p in partitions:
            row = self._rows.get(p)
            if row is not None and row.owner == me:
                row.owner, row.expires_ms = None, self._clock.now_ms()

    async def leave(self, me: str) -> None:
        self._members.pop(me, None)
        await self.release(me, list(self._rows))

    async def owner_url(self, partition: int) -> str | None:
        row = self._rows.get(partition)
        if row is None or row.owner is None or not self._live(row.expires_ms):
            return None
        member = self._members.get(row.owner)
        return None if member is None or not self._live(member[1]) else member[0]

    async def table(self) -> list[LeaseRow]:
        return [
            LeaseRow(p, r.owner, r.epoch, r.owner is not None and self._live(r.expires_ms))
            for p, r in sorted(self._rows.items())
        ]
