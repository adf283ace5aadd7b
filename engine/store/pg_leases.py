"""The lease table on PostgreSQL (migration 0009_leases.sql), and the fence of a unit of work.

Why here: the lease statements are few and each is one statement, atomic on its own, with every
time on the database's clock (`now()`), so processes whose clocks disagree still agree on who
holds what. Takeover is an UPDATE that bumps `epoch`; the partitions to take are picked with
`FOR UPDATE SKIP LOCKED`, so two processes acquiring at once never wait on, nor take, the same
row. The fence (`fence_unit`) is the one statement postgres.py adds to a unit of an owned entity
before its commit: `SELECT ... FOR SHARE` of the lease row with this process's (owner, epoch).
It holds a share lock to the commit, so a takeover (an UPDATE of that row) waits for the unit
to end and then finds its writes committed; a unit that finds the lease gone raises `LeaseLost`
and is rolled back: a paused process that resumes after a takeover writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.leases import CURRENT_FENCE, Fence, Grant, LeaseLost, LeaseRow
from engine.records import Delivery
from engine.store import pg_messages as mq

_LIVE = "expires_at > now()"


async def ensure_partitions(db: Any, partitions: int) -> None:
    await db.execute(
        "INSERT INTO partition_leases (partition)"
        " SELECT generate_series(0, $1::int - 1) ON CONFLICT DO NOTHING",
        partitions,
    )


async def join(db: Any, me: str, url: str, ttl_s: float) -> int:
    """Renew the membership and count the live members, in one statement."""
    count = await db.fetchval(
        "WITH up AS ("
        "  INSERT INTO lease_members (incarnation, url, expires_at)"
        "  VALUES ($1, $2, now() + make_interval(secs => $3))"
        "  ON CONFLICT (incarnation) DO UPDATE"
        "  SET url = EXCLUDED.url, expires_at = EXCLUDED.expires_at RETURNING incarnation)"
        f" SELECT 1 + count(*) FROM lease_members WHERE {_LIVE} AND incarnation <> $1",
        me,
        url,
        ttl_s,
    )
    return int(count)


def _grants(rows: Sequence[Any]) -> list[Grant]:
    return sorted(Grant(int(r["partition"]), int(r["epoch"])) for r in rows)


async def renew(db: Any, me: str, held: Sequence[int], ttl_s: float) -> list[Grant]:
    rows = await db.fetch(
        "UPDATE partition_leases SET expires_at = now() + make_interval(secs => $3)"
        " WHERE owner = $1 AND partition = ANY($2::int[]) RETURNING partition, epoch",
        me,
        list(held),
        ttl_s,
    )
    return _grants(rows)


async def acquire(db: Any, me: str, count: int, ttl_s: float) -> list[Grant]:
    if count <= 0:
        return []
    rows = await db.fetch(
        "UPDATE partition_leases l"
        " SET owner = $1, epoch = l.epoch + 1, expires_at = now() + make_interval(secs => $3)"
        " WHERE l.partition IN ("
        "   SELECT partition FROM partition_leases"
        "   WHERE owner IS NULL OR expires_at <= now()"
        "   ORDER BY partition LIMIT $2 FOR UPDATE SKIP LOCKED)"
        " RETURNING l.partition, l.epoch",
        me,
        count,
        ttl_s,
    )
    return _grants(rows)


async def release(db: Any, me: str, partitions: Sequence[int]) -> None:
    await db.execute(
        "UPDATE partition_leases SET owner = NULL, expires_at = now()"
        " WHERE owner = $1 AND partition = ANY($2::int[])",
        me,
        list(partitions),
    )


async def leave(db: Any, me: str) -> None:
    await db.execute(
        "WITH gone AS (DELETE FROM lease_members WHERE incarnation = $1)"
        " UPDATE partition_leases SET owner = NULL, expires_at = now() WHERE owner = $1",
        me,
    )


async def owner_url(db: Any, partition: int) -> str | None:
    url = await db.fetchval(
        "SELECT m.url FROM partition_leases l JOIN lease_members m ON m.incarnation = l.owner"
        f" WHERE l.partition = $1 AND l.{_LIVE} AND m.{_LIVE}",
        partition,
    )
    return None if url is None else str(url)


async def table(db: Any) -> list[LeaseRow]:
    rows = await db.fetch(
        f"SELECT partition, owner, epoch, {_LIVE} AS live FROM partition_leases ORDER BY partition"
    )
    return [
        LeaseRow(int(r["partition"]), r["owner"], int(r["epoch"]), bool(r["live"])) for r in rows
    ]


async def _holds(conn: Any, fence: Fence) -> bool:
    found = await conn.fetchval(
        "SELECT 1 FROM partition_leases WHERE partition = $1 AND owner = $2 AND epoch = $3"
        " FOR SHARE",
        fence.partition,
        fence.owner,
        fence.epoch,
    )
    return found is not None


async def check_fence(conn: Any, fence: Fence) -> None:
    """A write-behind unit's first queued write (pg_batch.py): its fence, in the (group's)
    transaction; `LeaseLost` fails that unit alone (the group reruns its members alone)."""
    if not await _holds(conn, fence):
        raise LeaseLost(fence)


def fence_writes(writes: list[Any]) -> None:
    """A write-behind unit of an owned entity checks its fence first (`check_fence`)."""
    fence = CURRENT_FENCE.get()
    if fence is not None:
        writes.insert(0, (check_fence, (fence,)))


async def fence_unit(uow: Any, began: bool) -> None:
    """Before a unit's commit (postgres.py): a unit of an owned entity that wrote (`began`: it
    has a transaction) checks its fence in that transaction; `LeaseLost` rolls it back."""
    fence = CURRENT_FENCE.get()
    if fence is None or not began or uow.aborted is not None:  # aborted: it rolls back
        return
    if not await uow._run(_holds, fence):
        raise LeaseLost(fence)


class PgLeases:
    """The `LeaseStore` port over a PostgreSQL store's pool (one statement per operation)."""

    def __init__(self, store: Any) -> None:
        self._read = store._read

    async def ensure_partitions(self, partitions: int) -> None:
        await self._read(ensure_partitions, partitions)

    async def join(self, me: str, url: str, ttl_s: float) -> int:
        return int(await self._read(join, me, url, ttl_s))

    async def renew(self, me: str, held: Sequence[int], ttl_s: float) -> list[Grant]:
        return list(await self._read(renew, me, held, ttl_s))

    async def acquire(self, me: str, count: int, ttl_s: float) -> list[Grant]:
        return list(await self._read(acquire, me, count, ttl_s))

    async def release(self, me: str, partitions: Sequence[int]) -> None:
        await self._read(release, me, partitions)

    async def leave(self, me: str) -> None:
        await self._read(leave, me)

    async def owner_url(self, partition: int) -> str | None:
        url = await self._read(owner_url, partition)
        return None if url is None else str(url)

    async def table(self) -> list[LeaseRow]:
        return list(await self._read(table))


# --- outbox deliveries claimed by one process at a time ---------------------------------------

#: A claimed delivery is hidden from the other processes' consumers this long: past the
#: handler's deadline (actors/outbox.py, 30 s), so only a dead claimer's deliveries reappear.
DELIVERY_CLAIM_MS = 60_000


async def claim_due_deliveries(
    db: Any, subscriber: str, now_ms: int, limit: int, claim_ms: int
) -> list[Delivery]:
    """The due deliveries of `subscriber`, claimed: locked with `FOR UPDATE SKIP LOCKED` (a
    row another process is claiming right now is skipped, never waited for) and moved to
    `now_ms + claim_ms`, so no other process's consumer fetches them while this one delivers.
    An ack deletes the row, a retry sets its next attempt: the claim ends with either; a
    claimer that dies leaves it to lapse. One statement."""
    rows = await db.fetch(
        "WITH due AS ("
        "  SELECT d.subscriber, d.message_id, d.next_attempt_at_ms, o.seq"
        "  FROM outbox_deliveries d JOIN outbox o ON o.message_id = d.message_id"
        "  WHERE d.subscriber = $1 AND d.status = 'pending' AND d.next_attempt_at_ms <= $2"
        "  ORDER BY o.seq LIMIT $3 FOR UPDATE OF d SKIP LOCKED),"
        " claimed AS ("
        "  UPDATE outbox_deliveries d SET next_attempt_at_ms = $2 + $4 FROM due"
        "  WHERE d.subscriber = due.subscriber AND d.message_id = due.message_id"
        "  RETURNING d.message_id, d.attempts, d.last_error, due.next_attempt_at_ms AS due_ms,"
        "  due.seq)"
        f" SELECT c.attempts, c.due_ms, c.last_error, {mq._MESSAGE_COLUMNS}"
        " FROM claimed c JOIN outbox o ON o.message_id = c.message_id ORDER BY c.seq",
        subscriber,
        now_ms,
        limit,
        claim_ms,
    )
    return [
        Delivery(
            subscriber=subscriber,
            message=mq._message_from_row(row),
            attempts=int(row["attempts"]),
            next_attempt_at_ms=int(row["due_ms"]),
            last_error=row["last_error"],
        )
        for row in rows
    ]
