"""The store conformance suite, part two: outbox fan-out with retry and dead letters, PSP event
dedup and idempotency records. Same `store` fixture (memory, embedded PostgreSQL, service):
a behaviour that differs between stores is a bug.
"""

from __future__ import annotations

import attrs
import pytest
import trio

from engine.errors import DuplicateKey
from engine.records import IdempotencyRecord
from engine.store.port import Store
from tests.factories import message, psp_event

# --- outbox ---------------------------------------------------------------------------------


async def test_outbox_fans_out_to_each_subscriber_independently(store: Store) -> None:
    await store.register_subscriber("booking", ["order.succeeded"])
    await store.register_subscriber("analytics", ["order.succeeded", "payment.completed"])
    m1, m2 = message("order.succeeded", "o1"), message("payment.completed", "p1")
    async with store.unit_of_work() as uow:
        await uow.append_outbox(m1)
        await uow.append_outbox(m2)
    booking = await store.fetch_due_deliveries("booking", 10_000, 10)
    analytics = await store.fetch_due_deliveries("analytics", 10_000, 10)
    assert [d.message.message_id for d in booking] == [m1.message_id]
    assert [d.message.message_id for d in analytics] == [m1.message_id, m2.message_id]
    assert booking[0].message == m1
    async with store.unit_of_work() as uow:
        await uow.ack_delivery("booking", m1.message_id)
    assert await store.fetch_due_deliveries("booking", 10_000, 10) == []
    assert len(await store.fetch_due_deliveries("analytics", 10_000, 10)) == 2
    assert await store.count_pending_deliveries() == 2


async def test_outbox_retry_then_dead_letter_then_replay(store: Store) -> None:
    await store.register_subscriber("notify", ["order.succeeded"])
    m = message()
    async with store.unit_of_work() as uow:
        await uow.append_outbox(m)
    async with store.unit_of_work() as uow:
        await uow.retry_delivery("notify", m.message_id, 9_000, "connection refused")
    assert await store.fetch_due_deliveries("notify", 8_999, 10) == []
    assert await store.next_delivery_due_ms("notify") == 9_000
    [due] = await store.fetch_due_deliveries("notify", 9_000, 10)
    assert (due.attempts, due.last_error) == (1, "connection refused")
    async with store.unit_of_work() as uow:
        await uow.dead_letter_delivery("notify", m.message_id, "HTTP 500", 9_500)
    assert await store.fetch_due_deliveries("notify", 99_999, 10) == []
    [dead] = await store.list_dead_letters(10)
    assert (dead.subscriber, dead.message, dead.attempts, dead.last_error) == (
        "notify",
        m,
        2,
        "HTTP 500",
    )
    async with store.unit_of_work() as uow:
        assert await uow.replay_dead_letter("notify", m.message_id, 10_000)
        assert not await uow.replay_dead_letter("notify", "msg-unknown", 10_000)
    assert await store.list_dead_letters(10) == []
    [again] = await store.fetch_due_deliveries("notify", 10_000, 10)
    assert again.attempts == 0


async def test_outbox_message_id_is_unique(store: Store) -> None:
    m = message()
    async with store.unit_of_work() as uow:
        await uow.append_outbox(m)
    with pytest.raises(DuplicateKey) as caught:
        async with store.unit_of_work() as uow:
            await uow.append_outbox(m)
    assert caught.value.key == "outbox.message_id"


# --- inbound dedup and idempotency ---------------------------------------------------------------


async def test_psp_event_id_is_unique(store: Store) -> None:
    async with store.unit_of_work() as uow:
        await uow.record_psp_event(psp_event("evt_1"))
    with pytest.raises(DuplicateKey) as caught:
        async with store.unit_of_work() as uow:
            await uow.record_psp_event(psp_event("evt_1"))
    assert caught.value.key == "psp_events.event_id"


async def test_idempotency_claim_complete_and_release(store: Store) -> None:
    record = IdempotencyRecord("key_storefront", "idem-1", "sha256:abc", created_at_ms=1_000)
    async with store.unit_of_work() as uow:
        await uow.begin_idempotent(record)
    with pytest.raises(DuplicateKey) as caught:
        async with store.unit_of_work() as uow:
            await uow.begin_idempotent(record)
    assert caught.value.key == "idempotency.scope_key"
    async with store.unit_of_work() as uow:
        await uow.complete_idempotent(
            "key_storefront", "idem-1", 201, b'{"id":"pay_1"}', {"content-type": "json"}
        )
    async with store.unit_of_work() as uow:
        stored = await uow.get_idempotency("key_storefront", "idem-1")
    assert stored is not None and stored.completed
    assert (stored.response_status, stored.response_body) == (201, b'{"id":"pay_1"}')
    assert stored.response_headers == {"content-type": "json"}
    # Another scope may use the same key.
    async with store.unit_of_work() as uow:
        await uow.begin_idempotent(attrs.evolve(record, scope="key_other"))
        await uow.release_idempotent("key_other", "idem-1")
    async with store.unit_of_work() as uow:
        assert await uow.get_idempotency("key_other", "idem-1") is None
    assert await store.purge_idempotency(before_ms=1_001) == 1
    async with store.unit_of_work() as uow:
        assert await uow.get_idempotency("key_storefront", "idem-1") is None


async def test_concurrent_idempotency_claims_let_one_in(store: Store) -> None:
    won: list[int] = []

    async def claim(i: int) -> None:
        try:
            async with store.unit_of_work() as uow:
                await uow.begin_idempotent(
                    IdempotencyRecord("scope", "k", f"fp{i}", created_at_ms=1)
                )
            won.append(i)
        except DuplicateKey:
            pass

    async with trio.open_nursery() as nursery:
        for i in range(4):
            nursery.start_soon(claim, i)
    assert len(won) == 1
