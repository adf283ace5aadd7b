"""How often a payment's checkout actor starts (and reloads the payment) in a fault-free flow.

An incarnation starts for the registration; it passivates after `actor_idle_timeout_s` without
messages, so a buyer who thinks longer than that costs one more incarnation when the webhook
comes. Nothing else may start one: the checkout's expiry, once the payment has left
AWAITING_PAYMENT, is cancelled instead of waking an incarnation to find nothing to do.
"""

from __future__ import annotations

import trio
from trio.testing import MockClock

from actors.messages import CHECKOUT
from actors.service import PaymentView
from engine.limits import EngineConfig
from engine.states import PaymentStatus
from tests.actors.harness import checkout, completed, make_world, payment_status, wait_until

EXPIRY_S = 600.0


def _config() -> EngineConfig:
    return EngineConfig(
        outbox_poll_interval_s=30.0, actor_idle_timeout_s=30.0, checkout_expiry_s=EXPIRY_S
    )


async def test_checkout_paid_at_once_is_started_once(autojump_clock: MockClock) -> None:
    world = make_world(config=_config())
    async with world.running() as engine:
        view = await engine.service.create_checkout(checkout("chk-1", {"s1": 100, "s2": 200}))
        assert isinstance(view, PaymentView) and view.payment.psp_session_id
        world.psp.buyer_pays(view.payment.psp_session_id)
        await wait_until(lambda: completed(world, view.payment.payment_id))
        await trio.sleep(2 * EXPIRY_S)  # past the checkout's expiry
        statistics = engine.system.statistics()
        assert statistics.spawned_by_kind[CHECKOUT] == 1
        assert not engine.ctx.checkout_expiries


async def test_buyer_thinking_past_the_idle_timeout_costs_one_more_start(
    autojump_clock: MockClock,
) -> None:
    world = make_world(config=_config())
    async with world.running() as engine:
        view = await engine.service.create_checkout(checkout("chk-2", {"s1": 100}))
        assert isinstance(view, PaymentView) and view.payment.psp_session_id
        await trio.sleep(120)  # the buyer on the hosted page; the actor passivates
        assert not engine.system.is_live(CHECKOUT, view.payment.payment_id)
        world.psp.buyer_pays(view.payment.psp_session_id)
        await wait_until(lambda: completed(world, view.payment.payment_id))
        await trio.sleep(2 * EXPIRY_S)
        assert engine.system.statistics().spawned_by_kind[CHECKOUT] == 2
        assert not engine.ctx.checkout_expiries


async def test_declined_checkout_is_not_woken_by_its_expiry(autojump_clock: MockClock) -> None:
    world = make_world(config=_config())
    async with world.running() as engine:
        view = await engine.service.create_checkout(checkout("chk-3", {"s1": 100}))
        assert isinstance(view, PaymentView) and view.payment.psp_session_id
        world.psp.buyer_declined(view.payment.psp_session_id)
        await wait_until(lambda: _status_is(world, view.payment.payment_id, PaymentStatus.FAILED))
        await trio.sleep(2 * EXPIRY_S)
        assert engine.system.statistics().spawned_by_kind[CHECKOUT] == 1
        assert world.psp.calls["expire"] == 0


async def test_unpaid_checkout_still_expires_in_a_new_incarnation(
    autojump_clock: MockClock,
) -> None:
    world = make_world(config=_config())
    async with world.running() as engine:
        view = await engine.service.create_checkout(checkout("chk-4", {"s1": 100}))
        assert isinstance(view, PaymentView)
        await trio.sleep(EXPIRY_S + 1)
        await wait_until(lambda: _status_is(world, view.payment.payment_id, PaymentStatus.EXPIRED))
        await trio.sleep(2 * EXPIRY_S)  # let every late message arrive
        assert world.psp.calls["expire"] == 1
        # Registration, then the expiry's incarnation. The PSP's `session.expired` webhook
        # comes after the expiry committed: it finds that incarnation still live, or finished
        # and passivated (trio's order of ready tasks decides) and then takes one more.
        assert engine.system.statistics().spawned_by_kind[CHECKOUT] in (2, 3)
        assert not engine.ctx.checkout_expiries


async def _status_is(world, payment_id: str, status: PaymentStatus) -> bool:  # type: ignore[no-untyped-def]
    return await payment_status(world, payment_id) is status
