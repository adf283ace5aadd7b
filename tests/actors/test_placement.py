"""FencedActor (actors/placement.py): a message is handled only under its family's fence, the
fence rides on the handler's task, a refusal is `NotOwner`, and an actor whose partition went
to another process and came back reloads its state before its next message."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from actors.lease_manager import LeaseManager
from actors.messages import CHECKOUT, ORDER
from actors.placement import FencedActor, FencedCalls, Placement
from engine.leases import CURRENT_FENCE, LeaseLimits, NotOwner
from engine.store.memory import MemoryStore
from engine.store.memory_leases import MemoryLeases
from tests.actors.test_lease_manager import TrioClock
from tests.factories import payment_with_orders

LIMITS = LeaseLimits()


class Probe:
    def __init__(self) -> None:
        self.loads = 0

    async def on_start(self) -> None:
        self.loads += 1

    async def receive(self, message: Any) -> Any:
        return CURRENT_FENCE.get()


async def _nothing(_: frozenset[int]) -> None:
    pass


async def test_fenced_actor_drives_only_under_its_fence_and_reloads_after_a_takeover(
    autojump_clock: trio.testing.MockClock,
) -> None:
    table = MemoryLeases(TrioClock())
    await table.ensure_partitions(64)
    a = LeaseManager(table, "inc_a", "http://a", LIMITS, _nothing)
    b = LeaseManager(table, "inc_b", "http://b", LIMITS, _nothing)
    await a.tick()
    probe = Probe()
    actor = FencedActor(probe, Placement(a, MemoryStore()), CHECKOUT, "pay_x")
    fence = await actor.receive("hello")
    assert (fence.owner, fence.epoch, fence.partition) == ("inc_a", 1, a.partition("pay_x"))
    assert CURRENT_FENCE.get() is None  # only the handler's
    assert probe.loads == 0
    await trio.sleep(LIMITS.ttl_s + 0.1)  # a paused: b takes everything
    await b.tick()
    await a.tick()
    with pytest.raises(NotOwner):
        await actor.receive("hello")
    await trio.sleep(LIMITS.ttl_s + 0.1)  # b gone: a takes it back at the next epoch
    await a.tick()
    fence = await actor.receive("hello")
    assert fence.epoch == 3 and probe.loads == 1  # reloaded: b drove it meanwhile


async def test_an_order_belongs_to_its_payments_partition(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = MemoryStore(checkpoint=trio.lowlevel.checkpoint)
    payment, orders = payment_with_orders([100, 200])
    async with store.unit_of_work() as uow:
        await uow.insert_payment(payment, orders)
    manager = LeaseManager(MemoryLeases(TrioClock()), "inc_a", "http://a", LIMITS, _nothing)
    placement = Placement(manager, store)
    assert await placement.partition(ORDER, orders[1].order_id) == manager.partition(
        payment.payment_id
    )
    assert await placement.partition(CHECKOUT, payment.payment_id) == manager.partition(
        payment.payment_id
    )


class Psp:
    def __init__(self) -> None:
        self.calls = 0
        self.name = "fake"

    async def capture(self, key: str) -> str:
        self.calls += 1
        return key


async def test_no_psp_call_once_the_lease_may_have_lapsed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    table = MemoryLeases(TrioClock())
    await table.ensure_partitions(64)
    a = LeaseManager(table, "inc_a", "http://a", LIMITS, _nothing)
    await a.tick()
    psp = Psp()
    fenced: Any = FencedCalls(psp, a)
    assert fenced.name == "fake"
    assert await fenced.capture("ord_1") == "ord_1"  # outside owned work: no fence to check
    token = CURRENT_FENCE.set(a.fence(3))
    try:
        assert await fenced.capture("ord_2") == "ord_2"
        await trio.sleep(LIMITS.ttl_s - LIMITS.safety_s)  # paused in the handler
        with pytest.raises(NotOwner):
            await fenced.capture("ord_3")
        assert psp.calls == 2
    finally:
        CURRENT_FENCE.reset(token)
