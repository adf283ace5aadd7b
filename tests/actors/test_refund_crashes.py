"""Kill the engine anywhere in a refund's life, reopen it on the same store: the buyer is
refunded exactly once and the books balance with the PSP's.

As tests/actors/test_crash_recovery.py for captures: a crash is the engine's nursery cancelled at
the N-th step after the capture completed, where a step is any store operation (including the
instant before a commit) or the instant after the PSP acted on a refund and before its answer
reaches us. The merchant retries its request with the same idempotency key after a crash.
"""

from __future__ import annotations

import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from trio.testing import MockClock

from actors.service import PaymentView
from engine.records import Refund
from engine.states import RefundStatus
from engine.store.memory import MemoryStore
from simulator.determinism import deterministic_scheduling
from tests.actors.harness import World, checkout, completed, make_world, wait_until


class CrashSwitch:
    """Counts steps once armed and cancels the running engine at the chosen ones."""

    def __init__(self, crash_at: set[int]) -> None:
        self.crash_at = crash_at
        self.armed = False
        self.steps = 0
        self.crashes = 0
        self.scope: trio.CancelScope | None = None

    async def step(self) -> None:
        if self.armed:
            self.steps += 1
            if self.steps in self.crash_at and self.scope is not None:
                self.crashes += 1
                self.scope.cancel()
        await trio.lowlevel.checkpoint()


def run_refund_with_crashes(
    crash_at: set[int], faults: list[str], amount: int | None
) -> CrashSwitch:
    switch = CrashSwitch(crash_at)

    async def scenario() -> None:
        world = make_world(store=MemoryStore(checkpoint=switch.step))
        original_refund = world.psp.refund

        async def refund_with_crash_point(*args, **kwargs):  # type: ignore[no-untyped-def]
            result = await original_refund(*args, **kwargs)
            await switch.step()  # the PSP acted; its answer has not reached us yet
            return result

        world.psp.refund = refund_with_crash_point  # type: ignore[method-assign]
        async with world.running() as engine:
            view = await engine.service.create_checkout(checkout("chk-rf", {"s1": 1_000}))
            assert isinstance(view, PaymentView) and view.payment.psp_session_id is not None
            world.psp.buyer_pays(view.payment.psp_session_id)
            await wait_until(lambda: completed(world, view.payment.payment_id))
        (order,) = await world.store.get_orders(view.payment.payment_id)
        world.psp.script("refund", *faults)
        switch.armed = True
        refund: Refund | None = None
        for _ in range(len(crash_at) + 2):
            with trio.CancelScope() as scope:
                switch.scope = scope
                async with world.running() as engine:
                    reply = await engine.service.create_refund(
                        order.order_id, amount, idempotency_key="merchant-key-1"
                    )
                    assert isinstance(reply, Refund), reply
                    refund = reply

                    await wait_until(lambda r=reply: _succeeded(world, r), timeout_s=7200)
                    break
        assert refund is not None
        assert list(world.psp.refunds) == [refund.refund_id]  # one PSP refund, under its id
        assert [r.refund_id for r in await world.store.list_refunds(order.order_id, 10)] == [
            refund.refund_id
        ]
        expected = 1_000 if amount is None else amount
        assert refund.amount_minor == expected
        trial = await world.store.trial_balance()
        assert trial.get(("psp_clearing", "USD"), 0) == 1_000 - expected
        assert trial.get(("refunds_clearing", "USD"), 0) == 0
        assert sum(v for (_, c), v in trial.items() if c == "USD") == 0
        (balance,) = await world.store.list_balances("s1")
        assert balance.available_minor == -trial.get(("merchant_payable:s1", "USD"), 0)

    trio.run(scenario, clock=MockClock(autojump_threshold=0))
    return switch


async def _succeeded(world: World, refund: Refund) -> bool:
    current = await world.store.get_refund(refund.refund_id)
    return current is not None and current.status is RefundStatus.SUCCEEDED


def test_crash_at_every_step_of_a_refund_recovers() -> None:
    with deterministic_scheduling(1):
        total = run_refund_with_crashes(set(), [], 400).steps
    assert total > 5
    fired = 0
    for step in range(1, total + 1):
        with deterministic_scheduling(1):
            fired += run_refund_with_crashes({step}, [], 400).crashes
    assert fired >= total * 0.9, (fired, total)


@settings(max_examples=40, deadline=None)
@given(
    st.sets(st.integers(1, 40), max_size=3),
    st.lists(st.sampled_from(["ok", "unavailable", "timeout_after", "hang"]), max_size=4),
    st.none() | st.integers(1, 1_000),
)
def test_crashes_anywhere_never_refund_twice_or_lose_one(
    crash_at: set[int], faults: list[str], amount: int | None
) -> None:
    run_refund_with_crashes(crash_at, faults, amount)


async def test_nothing_is_refunded_when_nobody_asks(autojump_clock: MockClock) -> None:
    """The control: a completed checkout alone leaves no refund anywhere."""
    world = make_world()
    async with world.running() as engine:
        view = await engine.service.create_checkout(checkout("chk-none", {"s1": 1_000}))
        assert isinstance(view, PaymentView) and view.payment.psp_session_id is not None
        world.psp.buyer_pays(view.payment.psp_session_id)
        await wait_until(lambda: completed(world, view.payment.payment_id))
    assert world.psp.refunds == {} and await world.store.list_unfinished_refunds(10) == []
