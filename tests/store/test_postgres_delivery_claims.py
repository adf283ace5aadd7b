"""Outbox deliveries claimed with `FOR UPDATE SKIP LOCKED` (several processes, issue 14): two
consumers claiming at once never get the same delivery, a claimed delivery is hidden until its
claim lapses, and an ack or a retry ends the claim. PostgreSQL only: the memory store is one
process and reads its deliveries (engine/store/pg_leases.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from engine.store.pg_leases import claim_due_deliveries
from engine.store.postgres import PostgresStore, open_postgres_store
from tests import pgfixtures
from tests.factories import message

pytestmark = [pytest.mark.postgres]


@pytest.fixture
async def pg() -> AsyncIterator[PostgresStore]:
    async with pgfixtures.fresh_database("embedded") as dsn, open_postgres_store(dsn) as store:
        yield store


async def test_concurrent_claims_never_share_a_delivery(pg: PostgresStore) -> None:
    await pg.register_subscriber("notify", ["order.succeeded"])
    sent = [message(key=f"ord-{n}") for n in range(40)]
    async with pg.unit_of_work() as uow:
        for m in sent:
            await uow.append_outbox(m)
    claims: list[list[str]] = []

    async def claim() -> None:
        got = await pg._read(claim_due_deliveries, "notify", 10**12, 15, 60_000)
        claims.append([d.message.message_id for d in got])

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(claim)
    claimed = [m for c in claims for m in c]
    assert len(claimed) == len(set(claimed)) == 40
    assert all(c == sorted(c, key=[m.message_id for m in sent].index) for c in claims)  # in order
    # Claimed: hidden from the next claim and from plain reads until the claim lapses.
    assert await pg._read(claim_due_deliveries, "notify", 10**12, 50, 60_000) == []
    assert len(await pg.fetch_due_deliveries("notify", 10**12 + 60_000, 50)) == 40


async def test_an_ack_or_a_retry_ends_the_claim(pg: PostgresStore) -> None:
    await pg.register_subscriber("notify", ["order.succeeded"])
    a, b = message(key="ord-a"), message(key="ord-b")
    async with pg.unit_of_work() as uow:
        await uow.append_outbox(a)
        await uow.append_outbox(b)
    pg.delivery_claim_ms = 60_000
    now = 10**12
    got = await pg.fetch_due_deliveries("notify", now, 10)
    assert [d.message.message_id for d in got] == [a.message_id, b.message_id]
    assert all(d.attempts == 0 for d in got)
    async with pg.unit_of_work() as uow:
        await uow.ack_delivery("notify", a.message_id)
        await uow.retry_delivery("notify", b.message_id, now + 5, "boom")
    assert await pg.fetch_due_deliveries("notify", now, 10) == []
    [again] = await pg.fetch_due_deliveries("notify", now + 5, 10)
    assert (again.message.message_id, again.attempts, again.last_error) == (b.message_id, 1, "boom")
