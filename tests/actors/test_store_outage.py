"""Outages are weather, not death (issue 14): an unavailable store never ends the engine.

Runtime level: a reload (`on_start`) or a handler that finds the store unavailable waits and
tries again; the asker hears `StoreUnavailable` at once; a `tell` is handled once the store is
back; an outage never counts toward the crash-loop limit; any other error of a reload is a crash
under the restart policy and never escapes into the nursery.

Engine level (hypothesis): the memory store is cut off (every committed-state read and every
commit raises StoreUnavailable) from any of its calls for a while (virtual time); the engine
lives through it, the payment completes, nothing is captured twice, the books balance.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from trio.testing import MockClock

from actors.runtime import ActorCrashed, ActorSystem
from actors.service import PaymentView
from engine.errors import StoreUnavailable
from engine.limits import EngineConfig
from engine.states import OrderStatus, PaymentStatus
from engine.store.memory import MemoryStore
from tests.actors.harness import assert_books_balanced, checkout, completed, make_world, wait_until

#: Virtual time: a flow with an outage of up to two minutes ends well within it.
FLOW_TIMEOUT_S = 7200.0


class Weather:
    """A switchable outage: `check()` raises StoreUnavailable while the store is down.

    Either switched by hand (`down`), or scheduled: down from the `down_at_call`-th store call
    for `down_for_s` seconds of (virtual) time.
    """

    def __init__(self, down_at_call: int | None = None, down_for_s: float = 0.0) -> None:
        self.down = False
        self.calls = 0
        self.refused = 0
        self._down_at_call = down_at_call
        self._down_for_s = down_for_s
        self._up_at: float | None = None

    async def check(self) -> None:
        self.calls += 1
        if self.calls == self._down_at_call:
            self.down = True
            self._up_at = trio.current_time() + self._down_for_s
        if self.down and self._up_at is not None and trio.current_time() >= self._up_at:
            self.down = False
        if self.down:
            self.refused += 1
            raise StoreUnavailable("database unreachable: the test cut it off")
        await trio.lowlevel.checkpoint()

    def end(self) -> None:
        """Clear the sky for good (the test's own reads after the flow)."""
        self.down = False
        self._down_at_call = None


class Ledger:
    """An actor over a dict "store" behind the weather; `on_start` may also be a bug."""

    def __init__(self, key: Hashable, rows: dict[Hashable, int], weather: Weather) -> None:
        self.key = key
        self.rows = rows
        self.weather = weather
        self.value = 0

    async def on_start(self) -> None:
        await self.weather.check()
        if self.rows.get(("broken", self.key)):
            raise RuntimeError("a bug in on_start")
        self.value = self.rows.get(self.key, 0)

    async def receive(self, message: Any) -> Any:
        if message == "boom":
            raise RuntimeError("broken invariant")
        await self.weather.check()
        self.value += 1
        self.rows[self.key] = self.value  # "commit"
        return self.value


def _system(
    nursery: trio.Nursery, weather: Weather, **limits: Any
) -> tuple[ActorSystem, dict[Hashable, int]]:
    rows: dict[Hashable, int] = {}
    system = ActorSystem(nursery, EngineConfig(**limits))
    system.register("ledger", lambda key: Ledger(key, rows, weather))
    return system, rows


async def test_asker_hears_store_unavailable_at_once_and_a_tell_is_handled_after(
    autojump_clock: MockClock,
) -> None:
    weather = Weather()
    async with trio.open_nursery() as nursery:
        system, rows = _system(nursery, weather, restarts_per_window_max=1)
        assert await system.ask("ledger", "a", "inc") == 1
        weather.down = True
        started = trio.current_time()
        with pytest.raises(StoreUnavailable):
            await system.ask("ledger", "a", "inc")
        assert trio.current_time() - started < 0.001  # not after the ask deadline
        await system.tell("ledger", "a", "inc")
        await trio.sleep(600)  # a long outage: far more retries than the restart policy allows
        stats = system.statistics()
        assert stats.store_retries > 20
        assert stats.store_waiting == 1
        assert rows["a"] == 1
        weather.down = False
        await trio.sleep(EngineConfig().store_retry_delay_s_max)
        # The asked message and the told one were each handled once; no crash, no crash loop.
        assert rows["a"] == 3
        assert await system.ask("ledger", "a", "inc") == 4
        stats = system.statistics()
        assert (stats.restarts, stats.crash_loops, stats.store_waiting) == (0, (), 0)
        assert system.health() == []
        nursery.cancel_scope.cancel()


async def test_a_reload_after_a_crash_waits_out_an_outage(autojump_clock: MockClock) -> None:
    weather = Weather()
    async with trio.open_nursery() as nursery:
        system, _ = _system(nursery, weather)
        assert await system.ask("ledger", "a", "inc") == 1
        weather.down = True
        with pytest.raises(ActorCrashed):
            await system.ask("ledger", "a", "boom")  # crashes; its reload meets the outage
        await trio.sleep(30)
        assert system.statistics().store_waiting == 1
        weather.down = False
        assert await system.ask("ledger", "a", "inc") == 2
        assert system.statistics().restarts == 1
        nursery.cancel_scope.cancel()


async def test_a_bug_in_a_reload_is_a_crash_loop_not_the_end_of_the_nursery(
    autojump_clock: MockClock,
) -> None:
    weather = Weather()
    async with trio.open_nursery() as nursery:
        system, rows = _system(nursery, weather, restarts_per_window_max=2)
        assert await system.ask("ledger", "a", "inc") == 1
        rows[("broken", "a")] = 1
        with pytest.raises(ActorCrashed):
            await system.ask("ledger", "a", "boom")  # its reloads now raise: a crash loop
        await trio.sleep(1)
        assert [c.key for c in system.statistics().crash_loops] == ["a"]
        assert not system.is_live("ledger", "a")
        assert await system.ask("ledger", "b", "inc") == 1  # the system lives on
        nursery.cancel_scope.cancel()


def _run_flow_through_outage(down_at_call: int, down_for_s: float, orders: int) -> int:
    """Run one flow with the store cut off from its `down_at_call`-th call for `down_for_s`;
    returns how many store calls the outage refused."""
    weather = Weather(down_at_call, down_for_s)

    async def scenario() -> None:
        world = make_world(store=MemoryStore(checkpoint=weather.check))
        with trio.fail_after(FLOW_TIMEOUT_S):
            async with world.running() as engine:
                payment_id = await _pay_through_outage(world, engine, orders)
                await wait_until(lambda: _up_and(completed(world, payment_id)), FLOW_TIMEOUT_S)
                assert engine.system.statistics().crash_loops == ()
                assert engine.health() == []
        weather.end()
        order_rows = await world.store.get_orders(payment_id)
        assert all(o.status is OrderStatus.SUCCESS and o.booked for o in order_rows)
        assert len(world.psp.captures) == orders
        assert await world.store.count_transactions() == orders
        await assert_books_balanced(world)

    trio.run(scenario, clock=MockClock(autojump_threshold=0))
    return weather.refused


async def _pay_through_outage(world: Any, engine: Any, orders: int) -> str:
    """The client creates the checkout (retrying with the same checkout id while the store is
    unavailable, as on a 503) and the buyer pays once the PSP session exists."""
    command = checkout("chk-outage", {f"s{i}": 1_000 + i for i in range(orders)})
    while True:
        try:
            view = await engine.service.create_checkout(command)
            break
        except StoreUnavailable:
            await trio.sleep(1)
    assert isinstance(view, PaymentView)
    assert view.payment.status is not PaymentStatus.REJECTED_BY_RISK  # retries are not velocity
    payment_id = view.payment.payment_id
    while True:
        try:
            payment = await world.store.get_payment(payment_id)
        except StoreUnavailable:
            payment = None
        if payment is not None and payment.psp_session_id is not None:
            world.psp.buyer_pays(payment.psp_session_id)
            return str(payment_id)
        await trio.sleep(1)


async def _up_and(check: Any) -> bool:
    try:
        return bool(await check)
    except StoreUnavailable:
        return False


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.floats(0.01, 120), st.integers(1, 3))
def test_an_outage_anywhere_in_a_flow_loses_and_doubles_nothing(
    down_at_call: int, down_for_s: float, orders: int
) -> None:
    _run_flow_through_outage(down_at_call, down_for_s, orders)


def test_an_outage_early_in_a_flow_refuses_store_calls_and_the_flow_completes() -> None:
    """The property above is not vacuous: an outage from the start hits the store many times."""
    assert _run_flow_through_outage(1, 30.0, 2) > 5
