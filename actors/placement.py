"""Placement: which process may drive an actor, and the fence its units of work commit under.

Why a wrapper around each actor instead of a change to every actor: ownership is a property of
the entity's *family* (engine/leases.py), not of what the actor does. `FencedActor` asks the
lease manager, before each message, for the fence of its family's partition: none (another
process holds it, or this one may have lost it) and the message is refused with `NotOwner`
before anything is read from the PSP or written. An actor that last drove its entity under an
older epoch (the partition went to another process and came back) reloads its state first. The
fence is set on the task (`CURRENT_FENCE`) for the handler, and every unit of work the handler
commits checks it in its own transaction (engine/store/pg_leases.py).

Family keys: a checkout is keyed by its payment id; its orders, and their refunds and disputes
(actors keyed by order id), belong to the payment's family, found once per order from the store
and cached (an order never changes payment); a merchant's actor is its own family.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

from actors.lease_manager import LeaseManager
from actors.messages import CHECKOUT, ORDER, REFUND
from actors.payout_messages import MERCHANT
from actors.runtime import Actor, ActorFactory
from engine.leases import CURRENT_FENCE, Fence, NotOwner
from engine.store.port import Store

#: How many order -> payment links the placement remembers (least recently used dropped).
ORDER_FAMILIES_CACHED_MAX = 10_000


class Placement:
    def __init__(self, manager: LeaseManager, store: Store) -> None:
        self.manager = manager
        self._store = store
        self._payment_of: OrderedDict[str, str] = OrderedDict()

    async def family_key(self, kind: str, key: str) -> str:
        if kind == CHECKOUT:
            return key
        if kind in (ORDER, REFUND):
            return await self.payment_of(key)
        assert kind == MERCHANT, f"no placement for actor kind {kind!r}"
        return f"merchant:{key}"

    async def payment_of(self, order_id: str) -> str:
        payment_id = self._payment_of.get(order_id)
        if payment_id is not None:
            self._payment_of.move_to_end(order_id)
            return payment_id
        order = await self._store.get_order(order_id)
        if order is None:
            return order_id  # no such order: any one process answers "unknown"
        self._payment_of[order_id] = order.payment_id
        if len(self._payment_of) > ORDER_FAMILIES_CACHED_MAX:
            self._payment_of.popitem(last=False)
        return order.payment_id

    async def partition(self, kind: str, key: str) -> int:
        return self.manager.partition(await self.family_key(kind, key))

    async def fence(self, kind: str, key: str) -> Fence:
        partition = await self.partition(kind, key)
        fence = self.manager.fence(partition)
        if fence is None:
            raise NotOwner(partition)
        return fence

    def wrap(self, kind: str, factory: ActorFactory) -> ActorFactory:
        def make(key: Hashable) -> Actor:
            return FencedActor(factory(key), self, kind, str(key))

        return make


class FencedActor:
    """An actor that handles a message only while its process holds its family's partition."""

    def __init__(self, inner: Actor, placement: Placement, kind: str, key: str) -> None:
        self.inner = inner
        self._placement = placement
        self._kind = kind
        self._key = key
        #: The epoch of the lease this incarnation last handled a message under.
        self._epoch: int | None = None

    @property
    def finished(self) -> bool:
        return getattr(self.inner, "finished", False) is True

    async def on_start(self) -> None:
        await self.inner.on_start()

    async def receive(self, message: Any) -> Any:
        fence = await self._placement.fence(self._kind, self._key)
        if fence.epoch != self._epoch:
            if self._epoch is not None:
                # The partition changed hands since this incarnation last drove it (it came
                # back after another process drove it): what it holds in memory is stale.
                await self.inner.on_start()
            self._epoch = fence.epoch
        token = CURRENT_FENCE.set(fence)
        try:
            return await self.inner.receive(message)
        finally:
            CURRENT_FENCE.reset(token)


class FencedCalls:
    """A PSP (or payout provider) client that makes a call of owned work only while its process
    still trusts the lease the work runs under: a process resumed after a pause (its monotonic
    clock jumped past its lease) does not call the PSP for an entity another process may be
    driving now. The message's fence was checked when the handler began; this checks it again
    right before each call, so the window left is the call's own send (see the architecture)."""

    def __init__(self, inner: Any, manager: LeaseManager) -> None:
        self._inner = inner
        self._manager = manager

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name.startswith("_") or not callable(attribute):
            return attribute
        manager = self._manager

        async def call(*args: Any, **kwargs: Any) -> Any:
            fence = CURRENT_FENCE.get()
            if fence is not None and manager.fence(fence.partition) != fence:
                raise NotOwner(fence.partition)
            return await attribute(*args, **kwargs)

        return call
