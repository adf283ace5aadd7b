"""10,000 concurrent checkouts on the memory store run with bounded memory.

Memory is bounded by work in flight, not by history: once the checkouts are done and their
actors idle, every actor passivates. The test prints the peak actor count and the process RSS
(figures for the team's notes) and asserts the bounds.
"""

from __future__ import annotations

import os

import psutil
import trio
from trio.testing import MockClock

from actors.service import PaymentView
from engine.limits import EngineConfig
from engine.states import PaymentStatus
from tests.actors.harness import checkout, make_world

CHECKOUTS = int(os.environ.get("PAYENGINE_TEST_CHECKOUTS", "10000"))
SELLERS = 50


async def test_ten_thousand_concurrent_checkouts_complete_with_bounded_memory(
    autojump_clock: MockClock,
) -> None:
    process = psutil.Process(os.getpid())
    rss_before = process.memory_info().rss
    world = make_world(config=EngineConfig(actor_idle_timeout_s=5, outbox_poll_interval_s=30))
    payment_ids: list[str] = []
    async with world.running() as engine:

        async def buy(i: int) -> None:
            sellers = {
                f"seller-{(i + k) % SELLERS}": 100 + (i * 7 + k) % 5_000 for k in range(1 + i % 3)
            }
            view = await engine.service.create_checkout(
                checkout(f"chk-{i}", sellers, buyer=f"b{i}")
            )
            assert isinstance(view, PaymentView) and view.payment.psp_session_id
            payment_ids.append(view.payment.payment_id)
            world.psp.buyer_pays(view.payment.psp_session_id)

        async with trio.open_nursery() as nursery:
            for i in range(CHECKOUTS):
                nursery.start_soon(buy, i)
        with trio.fail_after(3600):
            while len(engine.ctx.store._t.unfinished_payments):  # type: ignore[attr-defined]
                await trio.sleep(1)
        peak_rss = process.memory_info().rss
        stats = engine.system.statistics()
        await trio.sleep(10)  # everything idle: every actor passivates
        after = engine.system.statistics()
    completed = [
        p for p in await world.store.list_payments(1000) if p.status is PaymentStatus.COMPLETED
    ]
    print(
        f"\n10k checkouts: peak actors {stats.peak_actors}, spawned {stats.spawned}, "
        f"live after idle {after.live_actors}, RSS before {rss_before / 2**20:.0f} MiB, "
        f"peak {peak_rss / 2**20:.0f} MiB, transactions {await world.store.count_transactions()}"
    )
    assert len(payment_ids) == CHECKOUTS
    assert len(completed) == min(1000, CHECKOUTS)  # the newest page: all completed
    assert not world.store._t.unfinished_payments  # type: ignore[attr-defined]
    assert after.live_actors == 0
    # Actors alive at once never exceed what is in flight: one checkout, its orders, sellers.
    assert stats.peak_actors <= CHECKOUTS * 4 + SELLERS
    assert peak_rss - rss_before < 1024 * 2**20
