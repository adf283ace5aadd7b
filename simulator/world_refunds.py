"""The simulated world's refunds: merchants asking for them, and the PSP's bank settling them.

Why apart from the world: this is everything the refund flow meets from outside. A merchant
refunds `traffic.refund_p` of the orders it saw captured, after up to `refund_delay_s_max`
(short delays race the capture's own webhooks and the checkout's completion): all that is left
or a random part, and `refund_twice_p` of them send a second request at the same instant
(the two race each other for what is left). A request whose connection broke (the engine
crashed or was down) is retried with the same Idempotency-Key, as a client would; every answer
to one key must name the same refund (`idempotent_replies`).

The PSP holds `faults.psp_refund_pending_p` of refunds as pending; its bank settles them a
while later, most succeeding, some failing (the card was closed), and the PSP announces the
outcome by webhook, which the world's delivery may duplicate, delay, reorder or lose.

Nothing here runs, and no random number is drawn, unless `refund_p > 0`: the scenarios that
do not refund keep their trace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from actors.service import Rejection
from engine.records import PaymentOrder, Refund
from engine.states import OrderStatus
from simulator.determinism import stream

if TYPE_CHECKING:
    from simulator.world import SimWorld

#: A merchant retries a refund request whose connection broke this many times.
REFUND_ATTEMPTS_MAX = 30
REFUND_RETRY_S_MAX = 60.0
#: How often (virtual seconds) the PSP's bank looks at pending refunds.
BANK_INTERVAL_S = 120.0
#: The share of pending refunds the bank settles on each look, and of those that fail.
BANK_SETTLE_P = 0.5
BANK_FAIL_P = 0.2


class MerchantRefunds:
    def __init__(self, world: SimWorld) -> None:
        self.world = world
        self.on = world.scenario.traffic.refund_p > 0
        self._rng = stream(world.seed, "refunds")
        self._rng_bank = stream(world.seed, "refund_bank")
        self._nursery: trio.Nursery | None = None
        #: Merchants' requests started and not done.
        self.active = 0
        self._seen: set[str] = set()
        self._keys = 0
        #: Idempotency key -> the refund id of the first answer.
        self.replies: dict[str, str] = {}
        self.requested = 0
        self.rejected: dict[str, int] = {}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The merchants' requests and the PSP's bank, until the world stops."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            while True:
                await trio.sleep(BANK_INTERVAL_S)
                self._settle_pending()

    def order_captured(self, order: PaymentOrder) -> None:
        """A commit made `order` SUCCESS and booked: its merchant may refund it later."""
        if not self.on or self._nursery is None or order.order_id in self._seen:
            return
        self._seen.add(order.order_id)
        if not self.world.faults_on or self._rng.random() >= self.world.scenario.traffic.refund_p:
            return
        traffic = self.world.scenario.traffic
        delay_s = self._rng.uniform(0.0, traffic.refund_delay_s_max)
        amounts = [self._amount(order)]
        if self._rng.random() < traffic.refund_twice_p:
            amounts.append(self._amount(order))
        for amount in amounts:
            self._keys += 1
            self.active += 1
            self._nursery.start_soon(self._request, order.order_id, amount, delay_s, self._keys)

    def _amount(self, order: PaymentOrder) -> int | None:
        if self._rng.random() < self.world.scenario.traffic.refund_partial_p:
            return self._rng.randint(1, order.amount_minor)
        return None  # all that is left

    async def _request(self, order_id: str, amount: int | None, delay_s: float, n: int) -> None:
        world = self.world
        key = f"refund-{n}"
        try:
            await trio.sleep(delay_s)
            for _ in range(REFUND_ATTEMPTS_MAX):
                if world.violation is not None:
                    return
                reply = await world.request(
                    lambda engine: engine.service.create_refund(
                        order_id, amount, "simulated", idempotency_key=key
                    )
                )
                if reply is not None:
                    self._answered(key, order_id, reply)
                    return
                await trio.sleep(self._rng.uniform(1.0, REFUND_RETRY_S_MAX))
            world.note("refund_given_up", order_id, key)
        finally:
            self.active -= 1

    def _answered(self, key: str, order_id: str, reply: Refund | Rejection) -> None:
        world = self.world
        if isinstance(reply, Rejection):
            self.rejected[reply.reason] = self.rejected.get(reply.reason, 0) + 1
            world.note("refund_rejected", order_id, reply.reason)
            return
        self.requested += 1
        world.note("refund_requested", order_id, reply.refund_id, reply.amount_minor)
        first = self.replies.setdefault(key, reply.refund_id)
        if first != reply.refund_id:
            world.idempotency_breaks.append(
                f"refund key {key}: refund {first}, then refund {reply.refund_id}"
            )

    def _settle_pending(self) -> None:
        """The PSP's bank settles some pending refunds (all of them once the faults stopped)."""
        psp = self.world.psp
        for key in psp.pending_refunds():
            if self.world.faults_on and self._rng_bank.random() >= BANK_SETTLE_P:
                continue
            if self._rng_bank.random() < BANK_FAIL_P:
                psp.refund_fails(key, "card_closed")
                self.world.note("psp_refund_failed", key)
            else:
                psp.refund_succeeds(key)
                self.world.note("psp_refund_succeeded", key)

    def report(self) -> dict[str, object]:
        """What the merchants asked and what became of it at the PSP (the run's report)."""
        outcomes: dict[str, int] = {}
        for held in self.world.psp.refunds.values():
            word = held.status.value if held.refund_id else f"refused:{held.reason}"
            outcomes[word] = outcomes.get(word, 0) + 1
        return {
            "requests": self._keys,
            "created": self.requested,
            "rejected": dict(sorted(self.rejected.items())),
            "psp": dict(sorted(outcomes.items())),
        }

    def quiet(self) -> bool:
        return self.active == 0 and not self.world.psp.pending_refunds()


def captured_now(before: OrderStatus | None, order: PaymentOrder) -> bool:
    """Whether a commit moved `order` to SUCCESS (booked in the same unit of work)."""
    return before is not OrderStatus.SUCCESS and order.status is OrderStatus.SUCCESS
