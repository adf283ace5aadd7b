"""Conformance of the HTTP API's data in every store: API keys and merchant webhook endpoints.

Same rules as the rest of the port: unique keys raise the same DuplicateKey names, a failed unit
leaves nothing behind, and committed state is what later reads see.
"""

from __future__ import annotations

import pytest

from engine.access import ApiKey, WebhookEndpoint, hash_key
from engine.errors import DuplicateKey
from engine.store.port import Store


class Boom(Exception):
    pass


def _key(key_id: str, text: str, scope: str = "storefront") -> ApiKey:
    return ApiKey(key_id=key_id, key_hash=hash_key(text), scope=scope, created_at_ms=1000)


async def test_api_key_is_found_by_its_hash_only_after_commit(store: Store) -> None:
    key = _key("key_1", "secret-text-1", "merchant:seller-9")
    async with store.unit_of_work() as uow:
        await uow.insert_api_key(key)
        assert await store.get_api_key(key.key_hash) is None  # not committed yet
    found = await store.get_api_key(hash_key("secret-text-1"))
    assert found == key
    assert found.merchant_id == "seller-9"
    assert await store.get_api_key(hash_key("other")) is None


async def test_api_key_id_and_hash_are_unique(store: Store) -> None:
    async with store.unit_of_work() as uow:
        await uow.insert_api_key(_key("key_1", "text-1"))
    with pytest.raises(DuplicateKey) as same_id:
        async with store.unit_of_work() as uow:
            await uow.insert_api_key(_key("key_1", "text-2"))
    assert same_id.value.key == "api_keys.key_id"
    with pytest.raises(DuplicateKey) as same_hash:
        async with store.unit_of_work() as uow:
            await uow.insert_api_key(_key("key_2", "text-1"))
    assert same_hash.value.key == "api_keys.key_hash"
    assert await store.get_api_key(hash_key("text-2")) is None


async def test_failed_unit_keeps_no_api_key(store: Store) -> None:
    with pytest.raises(Boom):
        async with store.unit_of_work() as uow:
            await uow.insert_api_key(_key("key_1", "text-1"))
            raise Boom
    assert await store.get_api_key(hash_key("text-1")) is None


async def test_revocation_keeps_the_first_time_and_reports_absent_keys(store: Store) -> None:
    async with store.unit_of_work() as uow:
        await uow.insert_api_key(_key("key_1", "text-1", "admin"))
    async with store.unit_of_work() as uow:
        assert await uow.revoke_api_key("key_1", 5000)
        assert not await uow.revoke_api_key("key_missing", 5000)
    async with store.unit_of_work() as uow:
        assert await uow.revoke_api_key("key_1", 9000)
    found = await store.get_api_key(hash_key("text-1"))
    assert found is not None and found.revoked_at_ms == 5000 and not found.active


async def test_webhook_endpoint_is_one_per_merchant_and_replaced(store: Store) -> None:
    assert await store.get_webhook_endpoint("seller-1") is None
    first = WebhookEndpoint("seller-1", "https://a.example/hook", "whsec_a", 1000)
    second = WebhookEndpoint("seller-1", "https://b.example/hook", "whsec_b", 2000, False)
    async with store.unit_of_work() as uow:
        await uow.put_webhook_endpoint(first)
    assert await store.get_webhook_endpoint("seller-1") == first
    async with store.unit_of_work() as uow:
        await uow.put_webhook_endpoint(second)
    assert await store.get_webhook_endpoint("seller-1") == second
    assert await store.get_webhook_endpoint("seller-2") is None


async def test_fresh_store_is_ready(store: Store) -> None:
    assert await store.readiness() == []
