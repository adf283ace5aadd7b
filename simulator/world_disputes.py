"""The simulated world's disputes: card networks disputing captured payments, deciding later.

Why apart from the world: this is everything the dispute flow meets from outside. While the
faults last, `faults.dispute_p` of the orders the engine captured are disputed at the PSP
within `dispute_open_s_max` (a dispute takes what is left of the capture after refunds, so a
dispute races the merchant's refunds), and each is closed within `dispute_close_s_max`, won
with `dispute_win_p`. The PSP announces every step by webhook, which the world's delivery may
duplicate, delay, reorder or lose.

When the faults stop, every dispute still open is decided at once (as planned), and the PSP
delivers every dispute event again: a real PSP retries a webhook for days, so a delivery the
faults lost for good stands for one whose retries all fell inside the faulty hours; once they
stop, the retries get through. The engine must then end every dispute as the PSP says
(simulator/oracle_disputes.py).

Nothing here runs, and no random number is drawn, unless `dispute_p > 0`: the scenarios that
do not dispute keep their trace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from engine.records import PaymentOrder
from simulator.determinism import stream

if TYPE_CHECKING:
    from simulator.world import SimWorld

class PspDisputes:
    def __init__(self, world: SimWorld) -> None:
        self.world = world
        self.on = world.plan.dispute_p > 0
        self._rng = stream(world.seed, "disputes")
        self._nursery: trio.Nursery | None = None
        self._seen: set[str] = set()
        #: dispute id -> whether the card network will decide it for the merchant.
        self._planned: dict[str, bool] = {}
        #: Set once the faults stopped, every dispute was decided and its events sent again.
        self.done = False
        self.redelivered = 0
        #: Set by the world when the faults stop.
        self.faults_off = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Dispute and decide while the faults last; then decide the rest and redeliver."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await self.faults_off.wait()
            nursery.cancel_scope.cancel()  # openings not due yet never happen
        self._nursery = None
        self._faults_over()

    def order_captured(self, order: PaymentOrder) -> None:
        """A commit made `order` SUCCESS and booked: the buyer's bank may dispute it later."""
        if self._nursery is None or order.order_id in self._seen:
            return
        self._seen.add(order.order_id)
        f = self.world.plan
        if not self.world.faults_on or self._rng.random() >= f.dispute_p:
            return
        open_s = self._rng.uniform(0.0, f.dispute_open_s_max)
        close_s = self._rng.uniform(0.0, f.dispute_close_s_max)
        won = self._rng.random() < f.dispute_win_p
        self._nursery.start_soon(self._dispute, order.order_id, open_s, close_s, won)

    async def _dispute(self, order_id: str, open_s: float, close_s: float, won: bool) -> None:
        world = self.world
        await trio.sleep(open_s)
        capture = world.psp.captures.get(order_id)
        assert capture is not None, f"order {order_id} was booked but the PSP has no capture"
        opened = world.psp.dispute_book.open(capture.capture_id)
        if opened is None:  # fully refunded meanwhile
            world.note("psp_dispute_not_opened", order_id)
            return
        self._planned[opened.dispute_id] = won
        world.note("psp_dispute_opened", opened.dispute_id, order_id, opened.amount.minor)
        await trio.sleep(close_s)
        if world.psp.dispute_book.close(opened.dispute_id, won=won):
            world.note("psp_dispute_closed", opened.dispute_id, "won" if won else "lost")

    def _faults_over(self) -> None:
        psp = self.world.psp
        for dispute_id in psp.dispute_book.open_ids():
            won = self._planned.get(dispute_id, False)
            psp.dispute_book.close(dispute_id, won=won)
            self.world.note("psp_dispute_closed", dispute_id, "won" if won else "lost")
        for dispute in psp.disputes.values():
            for event in dispute.events:
                psp.webhook_send.send_nowait(event)  # the same event, id and all
                self.redelivered += 1
        self.done = True
        self.world.note("psp_disputes_redelivered", self.redelivered)

    def quiet(self) -> bool:
        return self.done and not self.world.psp.dispute_book.open_ids()

    def report(self) -> dict[str, object]:
        outcomes: dict[str, int] = {}
        for dispute in self.world.psp.disputes.values():
            outcomes[dispute.status.value] = outcomes.get(dispute.status.value, 0) + 1
        return {
            "disputed": len(self.world.psp.disputes),
            "psp": dict(sorted(outcomes.items())),
            "redelivered": self.redelivered,
        }
