"""What every payment actor shares: the ports, the limits, the runtime and the doorbell."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import trio

from actors.runtime import ActorSystem
from actors.timers import TimerHandle, Timers
from engine.gateway import Gateway
from engine.ids import Ids
from engine.limits import EngineConfig, backoff_delay_s
from engine.payout_gateway import PayoutGateway
from engine.ports import Clock, Rng
from engine.records import OutboxMessage
from engine.store.port import Store


class Doorbell:
    """Wakes the outbox consumers right after a commit that wrote outbox messages.

    Each waiter has its own event, so a ring is never consumed by one waiter for all. A waiter
    that declared its topics (`subscribe`) is woken only by rings for those topics; a ring
    without topics wakes every waiter.
    """

    def __init__(self) -> None:
        self._events: dict[str, trio.Event] = {}
        self._by_topic: dict[str, list[str]] = {}
        self._unfiltered: set[str] = set()
        self.rings = 0

    def subscribe(self, waiter: str, topics: Iterable[str]) -> None:
        """Wake `waiter` only for rings of `topics` (or rings without topics)."""
        self._events.setdefault(waiter, trio.Event())  # a ring before its first wait counts
        for topic in topics:
            waiters = self._by_topic.setdefault(topic, [])
            if waiter not in waiters:
                waiters.append(waiter)

    def ring(self, topics: Iterable[str] | None = None) -> None:
        """Wake the waiters of `topics` (every waiter when None) after a commit."""
        self.rings += 1
        if topics is None:
            for event in self._events.values():
                event.set()
            return
        woken: set[str] = set()
        for topic in topics:
            for waiter in self._by_topic.get(topic, ()):
                if waiter not in woken:
                    woken.add(waiter)
                    self.ring_one(waiter)
        # Waiters that never declared topics hear every ring.
        for waiter in self._unfiltered:
            self.ring_one(waiter)

    def ring_one(self, waiter: str) -> None:
        event = self._events.get(waiter)
        if event is not None:
            event.set()

    def is_rung(self, waiter: str) -> bool:
        """Whether a ring for `waiter` came since its last wait (its next wait returns at once)."""
        event = self._events.get(waiter)
        return event is not None and event.is_set()

    async def wait(self, waiter: str, timeout_s: float) -> None:
        event = self._events.get(waiter)
        if event is None:  # never subscribed: hears every ring
            event = self._events[waiter] = trio.Event()
            self._unfiltered.add(waiter)
        if not event.is_set():
            with trio.move_on_after(timeout_s):
                await event.wait()
        # Rung (now or since the last wait): re-arm, and the caller looks for work.
        if event.is_set():
            self._events[waiter] = trio.Event()


@attrs.define(eq=False)
class Context:
    store: Store
    gateway: Gateway
    clock: Clock
    ids: Ids
    rng: Rng
    config: EngineConfig
    system: ActorSystem
    timers: Timers[None]
    doorbell: Doorbell
    #: Test-only seams that switch on a known-bad behaviour, so the simulator's oracle can be
    #: shown to catch it (tests/simulation). Never set in production.
    faults: frozenset[str] = frozenset()
    #: The pending expiry timer of each payment awaiting its buyer (at most one), so the
    #: checkout actor can cancel it once the payment has left AWAITING_PAYMENT: an expiry
    #: firing later would only start an incarnation (and reload the payment) to find nothing
    #: to do. An entry leaves when its timer fires or is cancelled, so this holds no more
    #: entries than the timer heap holds expiries.
    checkout_expiries: dict[str, TimerHandle] = attrs.Factory(dict)
    #: The payout provider (actors/merchant.py); None: this engine makes no payouts.
    payout_gateway: PayoutGateway | None = None

    def message(self, topic: str, key: str, payload: Mapping[str, Any]) -> OutboxMessage:
        return OutboxMessage(self.ids.new("msg"), topic, key, dict(payload), self.clock.now_ms())

    def backoff_s(self, attempt: int) -> float:
        c = self.config
        return backoff_delay_s(
            attempt,
            c.retry_delay_s_base,
            c.retry_delay_factor,
            c.retry_delay_s_max,
            c.retry_jitter_ratio,
            self.rng.random(),
        )

    def tell_later(self, delay_s: float, kind: str, key: str, message: Any) -> None:
        async def fire() -> None:
            await self.system.tell(kind, key, message)

        self.timers.call_later(delay_s, fire)
