"""The actor runtime: mailboxes, ask deadlines, supervision, crash loops, passivation."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from actors.runtime import ActorCrashed, ActorStopped, ActorSystem, AskTimeout
from actors.timers import Timers
from engine.limits import EngineConfig


class Counter:
    starts = 0

    def __init__(self, key: Hashable, store: dict[Hashable, int]) -> None:
        self.key = key
        self.store = store
        self.value = 0

    async def on_start(self) -> None:
        Counter.starts += 1
        self.value = self.store.get(self.key, 0)

    async def receive(self, message: Any) -> Any:
        if message == "boom":
            raise RuntimeError("broken invariant")
        if message == "sleep-then-boom":
            await trio.sleep(1)
            raise RuntimeError("broken invariant")
        if message == "slow":
            await trio.sleep(100)
        self.value += 1
        self.store[self.key] = self.value  # "commit"
        return self.value


async def _system(nursery: trio.Nursery, **limits: Any) -> tuple[ActorSystem, dict[Hashable, int]]:
    store: dict[Hashable, int] = {}
    system = ActorSystem(nursery, EngineConfig(**limits))
    system.register("counter", lambda key: Counter(key, store))
    return system, store


async def test_ask_replies_and_messages_are_handled_one_at_a_time(
    autojump_clock: MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        system, store = await _system(nursery)
        results = []

        async def bump() -> None:
            results.append(await system.ask("counter", "a", "inc"))

        async with trio.open_nursery() as inner:
            for _ in range(20):
                inner.start_soon(bump)
        assert sorted(results) == list(range(1, 21))
        assert store["a"] == 20
        nursery.cancel_scope.cancel()


async def test_ask_deadline(autojump_clock: MockClock) -> None:
    async with trio.open_nursery() as nursery:
        system, _ = await _system(nursery)
        with pytest.raises(AskTimeout):
            await system.ask("counter", "a", "slow", timeout_s=1)
        nursery.cancel_scope.cancel()


async def test_crash_restarts_and_reloads_state(autojump_clock: MockClock) -> None:
    async with trio.open_nursery() as nursery:
        system, _store = await _system(nursery)
        assert await system.ask("counter", "a", "inc") == 1
        with pytest.raises(ActorCrashed, match="broken invariant"):
            await system.ask("counter", "a", "boom")
        assert await system.ask("counter", "a", "inc") == 2  # reloaded from the store
        assert system.statistics().restarts == 1
        assert system.health() == []
        nursery.cancel_scope.cancel()


async def test_crash_loop_beyond_policy_surfaces(autojump_clock: MockClock) -> None:
    async with trio.open_nursery() as nursery:
        system, _ = await _system(nursery, restarts_per_window_max=3, restart_window_s=60)
        for _ in range(4):
            with pytest.raises(ActorCrashed):
                await system.ask("counter", "bad", "boom")
        stats = system.statistics()
        assert [c.key for c in stats.crash_loops] == ["bad"]
        assert "crash loop: counter bad" in system.health()[0]
        assert not system.is_live("counter", "bad")
        # Other actors are unaffected, and a new message starts a fresh incarnation.
        assert await system.ask("counter", "good", "inc") == 1
        assert await system.ask("counter", "bad", "inc") == 1
        nursery.cancel_scope.cancel()


async def test_queued_messages_fail_when_actor_is_stopped(autojump_clock: MockClock) -> None:
    async with trio.open_nursery() as nursery:
        system, _ = await _system(nursery, restarts_per_window_max=0)
        errors: list[type[Exception]] = []

        async def ask(message: str) -> None:
            try:
                await system.ask("counter", "x", message)
            except (ActorCrashed, ActorStopped) as exc:
                errors.append(type(exc))

        async with trio.open_nursery() as inner:
            inner.start_soon(ask, "sleep-then-boom")
            await trio.sleep(0.5)  # the actor is busy; the next message queues behind
            inner.start_soon(ask, "inc")
        assert sorted(e.__name__ for e in errors) == ["ActorCrashed", "ActorStopped"]
        nursery.cancel_scope.cancel()


async def test_idle_actors_passivate_and_come_back(autojump_clock: MockClock) -> None:
    async with trio.open_nursery() as nursery:
        system, _ = await _system(nursery, actor_idle_timeout_s=10)
        for key in range(100):
            await system.tell("counter", key, "inc")
        assert system.statistics().live_actors == 100
        await trio.sleep(11)
        stats = system.statistics()
        assert (stats.live_actors, stats.passivated) == (0, 100)
        assert await system.ask("counter", 5, "inc") == 2
        nursery.cancel_scope.cancel()


async def test_message_arriving_as_the_idle_timeout_passes_is_handled(
    autojump_clock: MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        system, store = await _system(nursery, actor_idle_timeout_s=10)
        await system.ask("counter", "a", "inc")
        waited_since = trio.current_time()
        await trio.sleep_until(waited_since + 10)  # the actor is passivated in this instant
        delivered = system.tell_nowait("counter", "a", "inc")
        await trio.sleep(1)
        if not delivered:  # passivated first: a new incarnation takes the next message
            await system.tell("counter", "a", "inc")
            await trio.sleep(1)
        assert store["a"] == 2  # nothing was dropped
        assert system.statistics().passivated >= 1
        nursery.cancel_scope.cancel()


async def test_idle_passivation_follows_each_actors_own_last_wait(
    autojump_clock: MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        system, _ = await _system(nursery, actor_idle_timeout_s=10)
        await system.ask("counter", "old", "inc")
        await trio.sleep(6)
        await system.ask("counter", "new", "inc")
        await trio.sleep(5)  # "old" waited 11 s, "new" 5 s
        assert not system.is_live("counter", "old")
        assert system.is_live("counter", "new")
        await system.ask("counter", "new", "inc")  # starts a new wait
        await trio.sleep(9)
        assert system.is_live("counter", "new")
        await trio.sleep(2)
        assert system.statistics().live_actors == 0
        nursery.cancel_scope.cancel()


class Finisher(Counter):
    """Says it is finished after its second message."""

    @property
    def finished(self) -> bool:
        return self.value >= 2


async def test_finished_actor_passivates_without_waiting_and_comes_back(
    autojump_clock: MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        store: dict[Hashable, int] = {}
        system = ActorSystem(nursery, EngineConfig(actor_idle_timeout_s=1000))
        system.register("finisher", lambda key: Finisher(key, store))
        assert await system.ask("finisher", "a", "inc") == 1
        assert system.is_live("finisher", "a")  # not finished: waits for its idle timeout
        await system.tell("finisher", "a", "inc")
        await system.tell("finisher", "a", "inc")  # queued: handled before passivating
        await trio.sleep(0.001)
        assert not system.is_live("finisher", "a")
        assert system.statistics().passivated == 1
        assert store["a"] == 3
        assert await system.ask("finisher", "a", "inc") == 4  # a new incarnation
        nursery.cancel_scope.cancel()


async def test_full_mailbox_applies_backpressure(autojump_clock: MockClock) -> None:
    async with trio.open_nursery() as nursery:
        system, _ = await _system(nursery, mailbox_capacity_max=2)
        await system.tell("counter", "a", "slow")
        await trio.sleep(0.1)  # the actor is busy with "slow"
        assert system.tell_nowait("counter", "a", "inc")
        assert system.tell_nowait("counter", "a", "inc")
        assert not system.tell_nowait("counter", "a", "inc")  # full: the sender must wait
        assert system.statistics().mailbox_depth_max == 2
        nursery.cancel_scope.cancel()


async def test_actor_count_is_bounded(autojump_clock: MockClock) -> None:
    async with trio.open_nursery() as nursery:
        system, _ = await _system(nursery, actors_max=10, actor_idle_timeout_s=1)
        async with trio.open_nursery() as inner:
            for key in range(50):
                inner.start_soon(system.tell, "counter", key, "inc")
        await trio.sleep(5)
        assert system.statistics().peak_actors <= 10
        assert system.statistics().spawned == 50
        nursery.cancel_scope.cancel()


def _recorder(fired: list[str]) -> Callable[[str], Callable[[], Awaitable[None]]]:
    """`note(name)`: a timer callback that appends `name` to `fired` when it fires."""

    def note(name: str) -> Callable[[], Awaitable[None]]:
        async def fire() -> None:
            fired.append(name)

        return fire

    return note


async def test_timers_fire_in_deadline_order(autojump_clock: MockClock) -> None:
    fired: list[str] = []
    timers: Timers[None] = Timers()
    async with trio.open_nursery() as nursery:
        await nursery.start(timers.run, nursery)

        note = _recorder(fired)

        timers.call_later(30, note("c"))
        timers.call_later(10, note("a"))
        timers.call_later(20, note("b"))
        await trio.sleep(15)
        assert fired == ["a"]
        await trio.sleep(20)
        assert fired == ["a", "b", "c"]
        assert len(timers) == 0
        nursery.cancel_scope.cancel()


async def test_cancelled_timer_never_fires(autojump_clock: MockClock) -> None:
    fired: list[str] = []
    timers: Timers[None] = Timers()
    async with trio.open_nursery() as nursery:
        await nursery.start(timers.run, nursery)

        note = _recorder(fired)

        timers.call_later(10, note("kept"))
        dropped = timers.call_later(5, note("dropped"))
        dropped.cancel()
        await trio.sleep(20)
        assert fired == ["kept"]
        assert len(timers) == 0 and timers.cancelled_dropped == 1
        nursery.cancel_scope.cancel()
