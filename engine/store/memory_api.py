"""API keys and merchant webhook endpoints in the memory unit of work (memory_unit.py): what
a unit inserts or revokes, checked against the committed tables at commit and applied with
the same rules as PostgreSQL's constraints (a key id and a key hash are each unique; the first
revocation time stays)."""

from __future__ import annotations

import attrs

from engine.access import ApiKey, WebhookEndpoint
from engine.errors import DuplicateKey
from engine.store.memory_tables import Tables


class ApiUnitMixin:
    """The API-key and endpoint methods of the memory unit of work."""

    _t: Tables
    _api_keys: dict[str, ApiKey]  # inserted or revoked by this unit, by key_id
    _api_key_new: set[str]
    _endpoints: dict[str, WebhookEndpoint]

    async def insert_api_key(self, key: ApiKey) -> None:
        if key.key_id in self._t.api_keys or key.key_id in self._api_keys:
            raise DuplicateKey("api_keys.key_id", key.key_id)
        if key.key_hash in self._t.api_key_ids or any(
            k.key_hash == key.key_hash for k in self._api_keys.values()
        ):
            raise DuplicateKey("api_keys.key_hash")  # never echo a key's hash
        self._api_keys[key.key_id] = key
        self._api_key_new.add(key.key_id)

    async def revoke_api_key(self, key_id: str, now_ms: int) -> bool:
        current = self._api_keys.get(key_id) or self._t.api_keys.get(key_id)
        if current is None:
            return False
        if current.revoked_at_ms is None:
            self._api_keys[key_id] = attrs.evolve(current, revoked_at_ms=now_ms)
        return True

    async def put_webhook_endpoint(self, endpoint: WebhookEndpoint) -> None:
        self._endpoints[endpoint.merchant_id] = endpoint

    def _validate_api(self) -> None:
        t = self._t
        for key_id in self._api_key_new:
            key = self._api_keys[key_id]
            if key_id in t.api_keys:
                raise DuplicateKey("api_keys.key_id", key_id)
            if key.key_hash in t.api_key_ids:
                raise DuplicateKey("api_keys.key_hash")

    def _apply_api(self) -> None:
        t = self._t
        for key_id, key in self._api_keys.items():
            committed = t.api_keys.get(key_id)
            if committed is not None and committed.revoked_at_ms is not None:
                continue  # a concurrent revocation won; the first revocation time stays
            if committed is None and key_id not in self._api_key_new:
                continue  # revoked a key that a concurrent unit never committed
            t.api_keys[key_id] = key
            t.api_key_ids[key.key_hash] = key_id
        t.webhook_endpoints.update(self._endpoints)
