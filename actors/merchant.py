"""The merchant actor: one per seller; owns the seller's wallet and serializes its bookings.

Booking a succeeded order is one unit of work: the capture transaction (Dr psp_clearing / Cr
merchant_payable / Cr platform_revenue) with its wallet update, the order's booking flags and
the ack of the outbox delivery that asked for it. The ledger's unique business key
`(capture, order_id)` makes a second booking impossible; the check before posting only avoids
the failed statement.
"""

from __future__ import annotations

from typing import Any

import attrs

from actors.context import Context
from actors.messages import CHECKOUT, BookOrder, CheckCompletion
from engine.ledger import Transaction, TransactionKind, capture_entries
from engine.states import OrderStatus


class MerchantActor:
    def __init__(self, ctx: Context, merchant_id: str) -> None:
        self.ctx = ctx
        self.merchant_id = merchant_id

    async def on_start(self) -> None:
        return None  # the wallet lives in the store; nothing to cache

    async def receive(self, message: Any) -> Any:
        if isinstance(message, BookOrder):
            return await self._book(message)
        raise AssertionError(f"merchant actor got {message!r}")

    async def _book(self, command: BookOrder) -> str:
        payment_id: str | None = None
        outcome = "already_booked"
        async with self.ctx.store.unit_of_work() as uow:
            order = await uow.get_order(command.order_id)
            assert order is not None, f"booking unknown order {command.order_id}"
            assert order.seller_id == self.merchant_id, "booking routed to the wrong merchant"
            assert order.status is OrderStatus.SUCCESS, f"booking {order.status} order"
            payment_id = order.payment_id
            twice = "duplicate_webhook_booked_twice" in self.ctx.faults  # planted bug seam
            reference = self.ctx.ids.new("key") if twice else order.order_id
            existing = await uow.get_transaction_by_reference(TransactionKind.CAPTURE, reference)
            if existing is None and (twice or not order.booked):
                entries, _, _ = capture_entries(
                    order.seller_id, order.amount, self.ctx.config.commission_bps
                )
                await uow.post_transaction(
                    Transaction(
                        txn_id=self.ctx.ids.new("txn"),
                        kind=TransactionKind.CAPTURE,
                        reference=reference,
                        entries=entries,
                        created_at_ms=self.ctx.clock.now_ms(),
                        description=f"capture of order {order.order_id}",
                    )
                )
                outcome = "booked"
            if not order.booked:
                await uow.update_order(
                    attrs.evolve(
                        order,
                        ledger_booked=True,
                        wallet_booked=True,
                        updated_at_ms=self.ctx.clock.now_ms(),
                    )
                )
            await uow.ack_delivery(command.subscriber, command.message_id)
        await self.ctx.system.tell(CHECKOUT, payment_id, CheckCompletion())
        return outcome
