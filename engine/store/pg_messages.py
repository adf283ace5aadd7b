"""The PostgreSQL store's messaging statements: the outbox, deliveries, PSP events, idempotency.

Asyncio-native like pg_queries.py (see its docstring for why duplicates are detected with
`ON CONFLICT DO NOTHING` rather than a failing statement). A subscriber's pending rows in
`outbox_deliveries` are its durable cursor: ack deletes the row, retry reschedules it, dead
letters stay as `status = 'dead'` until replayed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.errors import DuplicateKey, NotFound
from engine.records import DeadLetter, Delivery, IdempotencyRecord, OutboxMessage, PspEvent
from engine.store.pg_queries import Executor, affected_rows

# --- outbox ----------------------------------------------------------------------------------

# The message and its fan-out in one statement: one pending delivery, due at once, for every
# subscriber of the topic. Nothing is written when the message id is taken.
_APPEND_OUTBOX = """
WITH m AS (
    INSERT INTO outbox (message_id, topic, key, payload, created_at_ms)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT DO NOTHING
    RETURNING message_id, topic, created_at_ms
), d AS (
    INSERT INTO outbox_deliveries (subscriber, message_id, attempts, next_attempt_at_ms, status)
    SELECT s.subscriber, m.message_id, 0, m.created_at_ms, 'pending'
    FROM m JOIN outbox_subscriptions s ON s.topic = m.topic
    RETURNING 1
)
SELECT (SELECT count(*) FROM m) AS messages, (SELECT count(*) FROM d) AS deliveries
"""


async def append_outbox(db: Executor, message: OutboxMessage) -> None:
    m = message
    row = await db.fetchrow(
        _APPEND_OUTBOX, m.message_id, m.topic, m.key, m.payload, m.created_at_ms
    )
    if row["messages"] == 0:
        raise DuplicateKey("outbox.message_id", m.message_id)


async def ack_delivery(db: Executor, subscriber: str, message_id: str) -> None:
    await db.execute(
        "DELETE FROM outbox_deliveries"
        " WHERE subscriber = $1 AND message_id = $2 AND status = 'pending'",
        subscriber,
        message_id,
    )


async def ack_deliveries(db: Executor, acks: Sequence[tuple[str, str]]) -> None:
    """`ack_delivery` of each (subscriber, message_id), in one statement (a unit's acks are
    sent with its end: pg_unit.py)."""
    await db.execute(
        "DELETE FROM outbox_deliveries d USING unnest($1::text[], $2::text[]) AS a(s, m)"
        " WHERE d.subscriber = a.s AND d.message_id = a.m AND d.status = 'pending'",
        [subscriber for subscriber, _ in acks],
        [message_id for _, message_id in acks],
    )


async def retry_delivery(
    db: Executor, subscriber: str, message_id: str, next_attempt_at_ms: int, error: str
) -> None:
    await db.execute(
        "UPDATE outbox_deliveries"
        " SET attempts = attempts + 1, next_attempt_at_ms = $3, last_error = $4"
        " WHERE subscriber = $1 AND message_id = $2 AND status = 'pending'",
        *(subscriber, message_id, next_attempt_at_ms, error),
    )


async def dead_letter_delivery(
    db: Executor, subscriber: str, message_id: str, error: str, now_ms: int
) -> None:
    """The final failed attempt counts, like a retry's."""
    await db.execute(
        "UPDATE outbox_deliveries"
        " SET status = 'dead', attempts = attempts + 1, last_error = $3, dead_at_ms = $4"
        " WHERE subscriber = $1 AND message_id = $2 AND status = 'pending'",
        *(subscriber, message_id, error, now_ms),
    )


async def replay_dead_letter(db: Executor, subscriber: str, message_id: str, now_ms: int) -> bool:
    status = await db.execute(
        "UPDATE outbox_deliveries"
        " SET status = 'pending', attempts = 0, next_attempt_at_ms = $3, last_error = NULL,"
        " dead_at_ms = NULL"
        " WHERE subscriber = $1 AND message_id = $2 AND status = 'dead'",
        *(subscriber, message_id, now_ms),
    )
    return affected_rows(status) == 1


async def register_subscriber(db: Executor, subscriber: str, topics: list[str]) -> None:
    await db.execute(
        "INSERT INTO outbox_subscriptions (subscriber, topic)"
        " SELECT $1, topic FROM unnest($2::text[]) AS t(topic) ON CONFLICT DO NOTHING",
        subscriber,
        topics,
    )


_MESSAGE_COLUMNS = "o.message_id, o.topic, o.key, o.payload, o.created_at_ms"


def _message_from_row(row: Any) -> OutboxMessage:
    return OutboxMessage(
        message_id=row["message_id"],
        topic=row["topic"],
        key=row["key"],
        payload=row["payload"],
        created_at_ms=int(row["created_at_ms"]),
    )


async def fetch_due_deliveries(
    db: Executor, subscriber: str, now_ms: int, limit: int
) -> list[Delivery]:
    rows = await db.fetch(
        f"SELECT d.attempts, d.next_attempt_at_ms, d.last_error, {_MESSAGE_COLUMNS}"
        " FROM outbox_deliveries d JOIN outbox o ON o.message_id = d.message_id"
        " WHERE d.subscriber = $1 AND d.status = 'pending' AND d.next_attempt_at_ms <= $2"
        " ORDER BY o.seq LIMIT $3",
        *(subscriber, now_ms, limit),
    )
    return [
        Delivery(
            subscriber=subscriber,
            message=_message_from_row(row),
            attempts=int(row["attempts"]),
            next_attempt_at_ms=int(row["next_attempt_at_ms"]),
            last_error=row["last_error"],
        )
        for row in rows
    ]


async def next_delivery_due_ms(db: Executor, subscriber: str) -> int | None:
    due = await db.fetchval(
        "SELECT min(next_attempt_at_ms) FROM outbox_deliveries"
        " WHERE subscriber = $1 AND status = 'pending'",
        subscriber,
    )
    return None if due is None else int(due)


async def count_pending_deliveries(db: Executor, subscriber: str | None) -> int:
    if subscriber is None:
        count = await db.fetchval("SELECT count(*) FROM outbox_deliveries WHERE status = 'pending'")
    else:
        count = await db.fetchval(
            "SELECT count(*) FROM outbox_deliveries WHERE subscriber = $1 AND status = 'pending'",
            subscriber,
        )
    return int(count)


async def list_dead_letters(db: Executor, limit: int) -> list[DeadLetter]:
    rows = await db.fetch(
        f"SELECT d.subscriber, d.attempts, d.last_error, d.dead_at_ms, {_MESSAGE_COLUMNS}"
        " FROM outbox_deliveries d JOIN outbox o ON o.message_id = d.message_id"
        " WHERE d.status = 'dead' ORDER BY d.dead_at_ms, d.message_id, d.subscriber LIMIT $1",
        limit,
    )
    return [
        DeadLetter(
            subscriber=row["subscriber"],
            message=_message_from_row(row),
            attempts=int(row["attempts"]),
            last_error=row["last_error"],
            dead_at_ms=int(row["dead_at_ms"]),
        )
        for row in rows
    ]


# --- inbound dedup and idempotency -----------------------------------------------------------


async def record_psp_event(db: Executor, event: PspEvent) -> None:
    inserted = await db.fetchval(
        "INSERT INTO psp_events (event_id, kind, payload, received_at_ms)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true",
        event.event_id,
        event.kind,
        event.payload,
        event.received_at_ms,
    )
    if not inserted:
        raise DuplicateKey("psp_events.event_id", event.event_id)


async def begin_idempotent(db: Executor, record: IdempotencyRecord) -> None:
    r = record
    inserted = await db.fetchval(
        "INSERT INTO idempotency (scope, key, fingerprint, completed, response_status,"
        " response_body, response_headers, created_at_ms, owner)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING RETURNING true",
        *(r.scope, r.key, r.fingerprint, r.completed, r.response_status, r.response_body),
        None if r.response_headers is None else dict(r.response_headers),
        r.created_at_ms,
        r.owner,
    )
    if not inserted:
        raise DuplicateKey("idempotency.scope_key", (r.scope, r.key))


async def get_idempotency(db: Executor, scope: str, key: str) -> IdempotencyRecord | None:
    row = await db.fetchrow(
        "SELECT scope, key, fingerprint, created_at_ms, completed, response_status,"
        " response_body, response_headers, owner FROM idempotency"
        " WHERE scope = $1 AND key = $2",
        scope,
        key,
    )
    if row is None:
        return None
    headers = row["response_headers"]
    return IdempotencyRecord(
        scope=row["scope"],
        key=row["key"],
        fingerprint=row["fingerprint"],
        created_at_ms=int(row["created_at_ms"]),
        completed=bool(row["completed"]),
        response_status=None if row["response_status"] is None else int(row["response_status"]),
        response_body=None if row["response_body"] is None else bytes(row["response_body"]),
        response_headers=None if headers is None else {str(k): str(v) for k, v in headers.items()},
        owner=row["owner"],
    )


async def complete_idempotent(
    db: Executor, scope: str, key: str, status: int, body: bytes, headers: Mapping[str, str]
) -> None:
    updated = await db.fetchval(
        "UPDATE idempotency SET completed = true, response_status = $3, response_body = $4,"
        " response_headers = $5 WHERE scope = $1 AND key = $2 RETURNING true",
        *(scope, key, status, bytes(body), dict(headers)),
    )
    if not updated:
        raise NotFound(f"idempotency key {key!r} is not claimed")


async def release_idempotent(db: Executor, scope: str, key: str) -> None:
    await db.execute("DELETE FROM idempotency WHERE scope = $1 AND key = $2", scope, key)


async def purge_idempotency(db: Executor, before_ms: int) -> int:
    status = await db.execute("DELETE FROM idempotency WHERE created_at_ms < $1", before_ms)
    return affected_rows(status)


async def take_over_idempotent(
    db: Executor, record: IdempotencyRecord, abandoned_before_ms: int
) -> bool:
    """One statement, so two processes taking over the same claim cannot both win."""
    r = record
    taken = await db.fetchval(
        "UPDATE idempotency SET owner = $3, created_at_ms = $4"
        " WHERE scope = $1 AND key = $2 AND NOT completed AND fingerprint = $5"
        " AND (created_at_ms < $6 OR (owner IS NOT NULL AND owner <> $3 AND NOT EXISTS ("
        "  SELECT 1 FROM process_leases p"
        "  WHERE p.incarnation = idempotency.owner AND p.lease_until_ms >= $4)))"
        " RETURNING true",
        *(r.scope, r.key, r.owner, r.created_at_ms, r.fingerprint, abandoned_before_ms),
    )
    return bool(taken)


async def renew_process_lease(
    db: Executor, incarnation: str, now_ms: int, lease_until_ms: int
) -> None:
    await db.execute("DELETE FROM process_leases WHERE lease_until_ms < $1", now_ms)
    await db.execute(
        "INSERT INTO process_leases (incarnation, lease_until_ms) VALUES ($1, $2)"
        " ON CONFLICT (incarnation) DO UPDATE SET lease_until_ms = EXCLUDED.lease_until_ms",
        incarnation,
        lease_until_ms,
    )


async def end_process_lease(db: Executor, incarnation: str) -> None:
    await db.execute("DELETE FROM process_leases WHERE incarnation = $1", incarnation)
