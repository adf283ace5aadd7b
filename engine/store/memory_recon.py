"""The memory store's reconciliation runs and items (the `ReconStore` part of the port).

Same rules as migration 0008: a file hash is unique (a second run of the same file returns the
first), an item belongs to one run, and only an open item can be resolved. Each method is
atomic under trio: it checks and writes without a checkpoint in between.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from engine.errors import DuplicateKey
from engine.reconciliation.run import ReconItem, ReconRun
from engine.store.port import PAGE_SIZE_MAX


class ReconTable:
    def __init__(self) -> None:
        self.runs: dict[str, ReconRun] = {}
        self.by_hash: dict[str, str] = {}
        self.items: dict[str, ReconItem] = {}


class MemoryRecon:
    """Mixed into MemoryStore: `_recon` is its table, `_cp` its checkpoint."""

    _recon: ReconTable
    _cp: Callable[[], Awaitable[None]]

    async def record_recon_run(self, run: ReconRun, items: Sequence[ReconItem]) -> ReconRun:
        await self._cp()
        t = self._recon
        earlier = t.by_hash.get(run.file_hash)
        if earlier is not None:
            return t.runs[earlier]
        if run.run_id in t.runs:
            raise DuplicateKey("recon_runs.run_id", run.run_id)
        ids = [item.item_id for item in items]
        if len(set(ids)) != len(ids) or any(i in t.items for i in ids):
            raise DuplicateKey("recon_items.item_id", ",".join(ids))
        assert all(item.run_id == run.run_id for item in items), "an item of another run"
        t.runs[run.run_id] = run
        t.by_hash[run.file_hash] = run.run_id
        for item in items:
            t.items[item.item_id] = item
        return run

    async def get_recon_run(self, run_id: str) -> ReconRun | None:
        await self._cp()
        return self._recon.runs.get(run_id)

    async def get_recon_run_by_hash(self, file_hash: str) -> ReconRun | None:
        await self._cp()
        run_id = self._recon.by_hash.get(file_hash)
        return None if run_id is None else self._recon.runs[run_id]

    async def get_recon_run_by_batch(self, batch: str) -> ReconRun | None:
        await self._cp()
        for run_id in sorted(
            self._recon.runs, key=lambda i: (self._recon.runs[i].created_at_ms, i)
        ):
            if batch in self._recon.runs[run_id].batches:
                return self._recon.runs[run_id]
        return None

    async def get_recon_item(self, item_id: str) -> ReconItem | None:
        await self._cp()
        return self._recon.items.get(item_id)

    async def list_recon_items(
        self,
        limit: int,
        after: str | None = None,
        *,
        run_id: str | None = None,
        klass: str | None = None,
        status: str | None = None,
        reference: str | None = None,
    ) -> list[ReconItem]:
        await self._cp()
        assert 0 < limit <= PAGE_SIZE_MAX, f"limit {limit} is outside 1..{PAGE_SIZE_MAX}"
        chosen = [
            item
            for item_id, item in sorted(self._recon.items.items())
            if (after is None or item_id > after)
            and (run_id is None or item.run_id == run_id)
            and (klass is None or item.klass.value == klass)
            and (status is None or item.status.value == status)
            and (reference is None or item.reference == reference)
        ]
        return chosen[:limit]

    async def resolve_recon_item(self, item_id: str, note: str, now_ms: int) -> ReconItem | None:
        await self._cp()
        item = self._recon.items.get(item_id)
        if item is None:
            return None
        resolved = item.resolved(note, now_ms)
        self._recon.items[item_id] = resolved
        return resolved
