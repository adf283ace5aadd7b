"""The PostgreSQL store's statements for the HTTP API's data: API keys, webhook endpoints, and
the readiness probe.

Asyncio-native like pg_queries.py, and like it detects duplicates with `ON CONFLICT DO NOTHING`
so an expected outcome never aborts the caller's transaction.
"""

from __future__ import annotations

from typing import Any

from engine.access import ApiKey, WebhookEndpoint
from engine.errors import DuplicateKey
from engine.store import migrate as migrations
from engine.store.pg_queries import Executor

_KEY_COLUMNS = "key_id, key_hash, scope, label, created_at_ms, revoked_at_ms"


def _key_from_row(row: Any) -> ApiKey:
    return ApiKey(
        key_id=row["key_id"],
        key_hash=row["key_hash"],
        scope=row["scope"],
        label=row["label"],
        created_at_ms=int(row["created_at_ms"]),
        revoked_at_ms=None if row["revoked_at_ms"] is None else int(row["revoked_at_ms"]),
    )


async def insert_api_key(db: Executor, key: ApiKey) -> None:
    inserted = await db.fetchval(
        f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT DO NOTHING RETURNING true",
        *(key.key_id, key.key_hash, key.scope, key.label, key.created_at_ms, key.revoked_at_ms),
    )
    if inserted:
        return
    taken = await db.fetchval("SELECT true FROM api_keys WHERE key_id = $1", key.key_id)
    if taken:
        raise DuplicateKey("api_keys.key_id", key.key_id)
    raise DuplicateKey("api_keys.key_hash")  # never echo a key's hash


async def revoke_api_key(db: Executor, key_id: str, now_ms: int) -> bool:
    found = await db.fetchval(
        "UPDATE api_keys SET revoked_at_ms = coalesce(revoked_at_ms, $2)"
        " WHERE key_id = $1 RETURNING true",
        key_id,
        now_ms,
    )
    return bool(found)


async def get_api_key(db: Executor, key_hash: str) -> ApiKey | None:
    row = await db.fetchrow(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_hash = $1", key_hash)
    return None if row is None else _key_from_row(row)


async def put_webhook_endpoint(db: Executor, endpoint: WebhookEndpoint) -> None:
    e = endpoint
    await db.execute(
        "INSERT INTO webhook_endpoints (merchant_id, url, secret, created_at_ms, enabled)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (merchant_id) DO UPDATE SET"
        " url = excluded.url, secret = excluded.secret,"
        " created_at_ms = excluded.created_at_ms, enabled = excluded.enabled",
        *(e.merchant_id, e.url, e.secret, e.created_at_ms, e.enabled),
    )


async def get_webhook_endpoint(db: Executor, merchant_id: str) -> WebhookEndpoint | None:
    row = await db.fetchrow(
        "SELECT merchant_id, url, secret, created_at_ms, enabled FROM webhook_endpoints"
        " WHERE merchant_id = $1",
        merchant_id,
    )
    if row is None:
        return None
    return WebhookEndpoint(
        merchant_id=row["merchant_id"],
        url=row["url"],
        secret=row["secret"],
        created_at_ms=int(row["created_at_ms"]),
        enabled=bool(row["enabled"]),
    )


async def readiness(pool: Any) -> list[str]:
    """Empty when the database answers and every shipped migration is applied."""
    pending = await migrations.pending_migrations(pool)
    return [f"migration {name} is not applied" for name in pending]
