"""The PostgreSQL store's reconciliation runs and items (migration 0008), asyncio-native.

`record_recon_run` writes the run and its items in one transaction of its own; a run whose
file hash is already kept is found first (and, against a concurrent twin, by the unique
constraint: ON CONFLICT DO NOTHING), so a re-upload returns the earlier run and writes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

from engine.reconciliation.run import ReconItem, ReconRun
from engine.store.pg_queries import Executor
from engine.store.port import PAGE_SIZE_MAX

P = ParamSpec("P")
T = TypeVar("T")

RUN_COLUMNS = "run_id, file_hash, format, batch, status, created_at_ms, lines, summary"
ITEM_COLUMNS = (
    "item_id, run_id, seq, class, reason, action, reference, line_number, expected_currency, "
    "expected_minor, found_currency, found_minor, detail, status, created_at_ms, "
    "resolution_note, resolved_at_ms"
)
_ITEM_FIELDS = [c.strip() for c in ITEM_COLUMNS.split(",")]
_RUN_FIELDS = [c.strip() for c in RUN_COLUMNS.split(",")]


def _placeholders(n: int) -> str:
    return ", ".join(f"${i}" for i in range(1, n + 1))


async def record_run(pool: Any, run: ReconRun, items: Sequence[ReconItem]) -> ReconRun:
    async with pool.acquire() as conn, conn.transaction():
        row = run.to_row()
        inserted = await conn.fetchval(
            f"INSERT INTO recon_runs ({RUN_COLUMNS}) VALUES ({_placeholders(len(_RUN_FIELDS))})"
            " ON CONFLICT (file_hash) DO NOTHING RETURNING run_id",
            *(row[f] for f in _RUN_FIELDS),
        )
        if inserted is None:
            earlier = await conn.fetchrow(
                f"SELECT {RUN_COLUMNS} FROM recon_runs WHERE file_hash = $1", run.file_hash
            )
            assert earlier is not None, "a run conflicted on its hash but none has it"
            return ReconRun.from_row(earlier)
        if items:
            await conn.executemany(
                f"INSERT INTO recon_items ({ITEM_COLUMNS})"
                f" VALUES ({_placeholders(len(_ITEM_FIELDS))})",
                [[item.to_row()[f] for f in _ITEM_FIELDS] for item in items],
            )
    return run


async def get_run(db: Executor, run_id: str) -> ReconRun | None:
    row = await db.fetchrow(f"SELECT {RUN_COLUMNS} FROM recon_runs WHERE run_id = $1", run_id)
    return None if row is None else ReconRun.from_row(row)


async def get_run_by_hash(db: Executor, file_hash: str) -> ReconRun | None:
    row = await db.fetchrow(f"SELECT {RUN_COLUMNS} FROM recon_runs WHERE file_hash = $1", file_hash)
    return None if row is None else ReconRun.from_row(row)


async def get_run_by_batch(db: Executor, batch: str) -> ReconRun | None:
    row = await db.fetchrow(
        f"SELECT {RUN_COLUMNS} FROM recon_runs WHERE summary->'batches' ? $1"
        " ORDER BY created_at_ms, run_id LIMIT 1",
        batch,
    )
    return None if row is None else ReconRun.from_row(row)


async def get_item(db: Executor, item_id: str) -> ReconItem | None:
    row = await db.fetchrow(f"SELECT {ITEM_COLUMNS} FROM recon_items WHERE item_id = $1", item_id)
    return None if row is None else ReconItem.from_row(row)


async def list_items(
    db: Executor,
    limit: int,
    after: str | None,
    run_id: str | None,
    klass: str | None,
    status: str | None,
    reference: str | None,
) -> list[ReconItem]:
    assert 0 < limit <= PAGE_SIZE_MAX, f"limit {limit} is outside 1..{PAGE_SIZE_MAX}"
    rows = await db.fetch(
        f"SELECT {ITEM_COLUMNS} FROM recon_items"
        " WHERE ($2::text IS NULL OR item_id > $2) AND ($3::text IS NULL OR run_id = $3)"
        " AND ($4::text IS NULL OR class = $4) AND ($5::text IS NULL OR status = $5)"
        " AND ($6::text IS NULL OR reference = $6)"
        " ORDER BY item_id LIMIT $1",
        limit,
        after,
        run_id,
        klass,
        status,
        reference,
    )
    return [ReconItem.from_row(row) for row in rows]


async def resolve_item(db: Executor, item_id: str, note: str, now_ms: int) -> ReconItem | None:
    await db.execute(
        "UPDATE recon_items SET status = 'resolved', resolution_note = $2, resolved_at_ms = $3"
        " WHERE item_id = $1 AND status = 'open'",
        item_id,
        note,
        now_ms,
    )
    return await get_item(db, item_id)


class PostgresRecon:
    """Mixed into PostgresStore: every method is one `_read` (a statement or a transaction of
    its own on the pool)."""

    async def _read(
        self, op: Callable[Concatenate[Any, P], Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        raise NotImplementedError

    async def record_recon_run(self, run: ReconRun, items: Sequence[ReconItem]) -> ReconRun:
        return await self._read(record_run, run, items)

    async def get_recon_run(self, run_id: str) -> ReconRun | None:
        return await self._read(get_run, run_id)

    async def get_recon_run_by_hash(self, file_hash: str) -> ReconRun | None:
        return await self._read(get_run_by_hash, file_hash)

    async def get_recon_run_by_batch(self, batch: str) -> ReconRun | None:
        return await self._read(get_run_by_batch, batch)

    async def get_recon_item(self, item_id: str) -> ReconItem | None:
        return await self._read(get_item, item_id)

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
        return await self._read(list_items, limit, after, run_id, klass, status, reference)

    async def resolve_recon_item(self, item_id: str, note: str, now_ms: int) -> ReconItem | None:
        return await self._read(resolve_item, item_id, note, now_ms)
