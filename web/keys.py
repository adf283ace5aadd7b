"""Minting API keys: the text is shown once, only its hash is stored (engine/access.py).

Used by `payengine keys create`, by `payengine serve --print-keys`, and by tests.
"""

from __future__ import annotations

import secrets

from engine.access import ApiKey, check_scope, hash_key
from engine.ids import Ids
from engine.ports import Clock
from engine.store.port import Store

#: Random bytes in a key: 256 bits, so the unsalted SHA-256 cannot be brute-forced.
KEY_RANDOM_BYTES = 32
KEY_PREFIX = "pek_"


async def create_api_key(
    store: Store, ids: Ids, clock: Clock, scope: str, label: str = ""
) -> tuple[ApiKey, str]:
    """Store a new key for `scope`; returns the record and the key text (never stored)."""
    check_scope(scope)
    text = KEY_PREFIX + secrets.token_urlsafe(KEY_RANDOM_BYTES)
    key = ApiKey(
        key_id=ids.new("key"),
        key_hash=hash_key(text),
        scope=scope,
        created_at_ms=clock.now_ms(),
        label=label,
    )
    async with store.unit_of_work() as uow:
        await uow.insert_api_key(key)
    return key, text
