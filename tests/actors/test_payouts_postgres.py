"""Payouts on a real PostgreSQL (real time): racing payouts never overdraw, a lost answer is
retried under the same key, a bank return credits the seller back, the books balance."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from actors.service import Rejection
from engine.ledger import BANK_CASH
from engine.records import Payout
from engine.states import PayoutStatus
from engine.store.port import Store
from simulator.payout_provider import FakePayoutProvider, OutcomePlan, PayoutOutcome
from tests import pgfixtures
from tests.actors.harness import make_world
from tests.actors.test_payin_postgres import DEADLINE_S, FAST
from tests.actors.test_payouts import account, payout_world, sold, wallet

pytestmark = pytest.mark.postgres


@pytest.fixture(
    params=[k for k in pgfixtures.PG_KINDS if k == "embedded" or pgfixtures.service_url()]
)
async def pg(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    from engine.store.postgres import open_postgres_store

    async with pgfixtures.fresh_database(request.param) as dsn, open_postgres_store(dsn) as store:
        yield store


async def _status(store: Store, payout_id: str, status: PayoutStatus) -> None:
    with trio.fail_after(DEADLINE_S):
        while True:
            payout = await store.get_payout(payout_id)
            if payout is not None and payout.status is status:
                return
            await trio.sleep(0.02)


async def test_payouts_race_retry_and_return_on_postgres(pg: Store) -> None:
    world = make_world(store=pg, config=FAST)
    provider = FakePayoutProvider(world.clock)
    provider.outcome = lambda p: OutcomePlan(
        PayoutOutcome.RETURNED if p.amount.minor == 1_000 else PayoutOutcome.PAID, 0.05, 0.1
    )
    provider.script("submit", "timeout_after")
    world.payout_provider = provider
    async with payout_world(world) as (world, engine, _):
        await sold(world, engine)  # 9000 available
        replies: list[Payout | Rejection] = []

        async def ask(key: str) -> None:
            replies.append(
                await engine.payouts.create_payout("s1", "USD", 6_000, idempotency_key=key)
            )

        async with trio.open_nursery() as nursery:
            for key in ("a", "b", "c"):
                nursery.start_soon(ask, key)
        made = [r for r in replies if isinstance(r, Payout)]
        assert len(made) == 1, replies
        await _status(pg, made[0].payout_id, PayoutStatus.PAID)
        assert provider.submit_calls[made[0].payout_id] == 2  # the lost answer, then the retry
        back = await engine.payouts.create_payout("s1", "USD", 1_000)
        assert isinstance(back, Payout)
        await _status(pg, back.payout_id, PayoutStatus.RETURNED)
    assert await wallet(world) == (3_000, 0)
    assert await account(world, BANK_CASH) == -6_000
    assert sorted(provider.payouts) == sorted([made[0].payout_id, back.payout_id])
