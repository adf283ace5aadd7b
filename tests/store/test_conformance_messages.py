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


# --- idempotency claims that die with their process (issue 14) ---------------------------------

#: The in-flight timeout's cutoff in these tests: claims made before it are abandoned anyway.
_OLD_MS = 500


async def _claim(store: Store, owner: str | None, created_at_ms: int = 1_000) -> IdempotencyRecord:
    record = IdempotencyRecord("scope", "k", "fp", created_at_ms=created_at_ms, owner=owner)
    async with store.unit_of_work() as uow:
        await uow.begin_idempotent(record)
    return record


async def _owner(store: Store) -> str | None:
    async with store.unit_of_work() as uow:
        claim = await uow.get_idempotency("scope", "k")
    assert claim is not None
    return claim.owner


def _retry(owner: str, at_ms: int, fingerprint: str = "fp") -> IdempotencyRecord:
    return IdempotencyRecord("scope", "k", fingerprint, created_at_ms=at_ms, owner=owner)


async def test_a_live_owners_claim_is_not_taken_over(store: Store) -> None:
    await store.renew_process_lease("inc_a", now_ms=1_000, lease_until_ms=4_000)
    await _claim(store, "inc_a")
    assert await _owner(store) == "inc_a"
    assert not await store.take_over_idempotent(_retry("inc_b", 2_000), _OLD_MS)
    assert await _owner(store) == "inc_a"


async def test_a_dead_owners_claim_is_taken_over_at_once_by_one_process(store: Store) -> None:
    await store.renew_process_lease("inc_a", now_ms=1_000, lease_until_ms=4_000)
    await _claim(store, "inc_a")
    # inc_a was killed: its lease lapses at 4_000 and is never renewed. Three live processes
    # retry the same request at once.
    for owner in ("inc_b", "inc_c", "inc_d"):
        await store.renew_process_lease(owner, now_ms=4_001, lease_until_ms=8_000)
    results: list[str] = []

    async def take(owner: str) -> None:
        if await store.take_over_idempotent(_retry(owner, 4_001), _OLD_MS):
            results.append(owner)

    async with trio.open_nursery() as nursery:
        for owner in ("inc_b", "inc_c", "inc_d"):
            nursery.start_soon(take, owner)
    assert len(results) == 1  # the new owner's lease is live: nobody takes it from them
    assert await _owner(store) == results[0]


async def test_an_ended_lease_frees_its_claims_at_once(store: Store) -> None:
    await store.renew_process_lease("inc_a", now_ms=1_000, lease_until_ms=4_000)
    await store.renew_process_lease("inc_b", now_ms=1_000, lease_until_ms=4_000)
    await _claim(store, "inc_a")
    await store.end_process_lease("inc_a")
    assert await store.take_over_idempotent(_retry("inc_b", 1_001), _OLD_MS)
    assert await _owner(store) == "inc_b"


async def test_a_renewal_forgets_lapsed_leases_and_keeps_live_ones(store: Store) -> None:
    await store.renew_process_lease("inc_a", now_ms=1_000, lease_until_ms=2_000)
    await store.renew_process_lease("inc_b", now_ms=1_000, lease_until_ms=9_000)
    await _claim(store, "inc_b")
    await store.renew_process_lease("inc_c", now_ms=3_000, lease_until_ms=6_000)  # drops inc_a
    await store.renew_process_lease("inc_a", now_ms=3_000, lease_until_ms=6_000)  # back again
    assert not await store.take_over_idempotent(_retry("inc_c", 5_000), _OLD_MS)  # inc_b lives


@pytest.mark.parametrize(
    ("claim_owner", "retry_owner", "fingerprint", "at_ms", "completed", "taken"),
    [
        (None, "inc_b", "fp", 2_000, False, False),  # no owner: only the timeout frees it
        (None, "inc_b", "fp", 2_000, False, True),  # ... made before the cutoff (below)
        ("inc_a", "inc_b", "other", 9_000, False, False),  # another request: never
        ("inc_a", "inc_b", "fp", 9_000, True, False),  # completed: replayed, never taken
        ("inc_a", "inc_a", "fp", 9_000, False, False),  # its own owner: only by the timeout
    ],
)
async def test_take_over_rules(
    store: Store,
    claim_owner: str | None,
    retry_owner: str,
    fingerprint: str,
    at_ms: int,
    completed: bool,
    taken: bool,
) -> None:
    await _claim(store, claim_owner)
    if completed:
        async with store.unit_of_work() as uow:
            await uow.complete_idempotent("scope", "k", 201, b"{}", {})
    cutoff_ms = 1_001 if taken else _OLD_MS  # the claim was made at 1_000
    assert (
        await store.take_over_idempotent(_retry(retry_owner, at_ms, fingerprint), cutoff_ms)
        is taken
    )
    assert await _owner(store) == (retry_owner if taken else claim_owner)
