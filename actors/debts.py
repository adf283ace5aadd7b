"""The merchant actor's debt collection: a seller's debt netted against its wallet.

Why here: the merchant actor (actors/merchant.py) is the only one that moves a seller's wallet
money out. Refunds and lost disputes record the seller's share as a debt
(`merchant_receivable:<id>`) in their own unit of work and then ask the merchant actor to
`SettleDebts`; the actor also settles first inside every unit of work that could pay money
out (a payout's creation) or that brings money back into the wallet (a payout voided or
returned). The rule is engine/receivables.py `settle_debt_entries`: a function of the two
balances the unit reads, so a repeated or racing settlement posts nothing more.

`ask_settle` is how another actor asks: after its own commit, best effort. A lost ask (a crash
between the two commits, a timeout) loses nothing: the debt stays on the books, and the next
settlement (at the latest the seller's next payout, which settles in its own unit) collects it.
"""

from __future__ import annotations

import logging

from actors.context import Context
from actors.payout_messages import MERCHANT, SettleDebts
from actors.runtime import ActorCrashed, AskTimeout
from engine.errors import StoreUnavailable
from engine.leases import Fenced
from engine.ledger import (
    PLATFORM_REVENUE,
    Entry,
    Transaction,
    TransactionKind,
    merchant_payable,
)
from engine.money import Money
from engine.receivables import settle_debt_entries
from engine.store.port import UnitOfWork

log = logging.getLogger("payengine.debts")


async def settle_debt(
    ctx: Context, uow: UnitOfWork, merchant_id: str, currency: str
) -> Transaction | None:
    """Net the merchant's debt in `currency` against its available balance, in `uow` (the
    merchant actor's unit of work); the posted transaction, or None when there was nothing."""
    receivable = await uow.receivable_minor(merchant_id, currency)
    if receivable == 0:
        return None
    balance = await uow.get_balance(merchant_id, currency)
    decided = settle_debt_entries(merchant_id, currency, receivable, balance.available_minor)
    if decided is None:
        return None
    kind, entries = decided
    if (
        "debt_collection_not_credited" in ctx.faults
        and kind is TransactionKind.RECEIVABLE_COLLECTED
    ):
        entries = _planted_collection_not_credited(merchant_id, entries)
    txn_id = ctx.ids.new("txn")
    txn = Transaction(
        txn_id=txn_id,
        kind=kind,
        reference=txn_id,  # each settlement is its own fact: the rule, not a key, dedupes
        entries=entries,
        created_at_ms=ctx.clock.now_ms(),
        description=f"{kind.value.replace('_', ' ')} ({merchant_id})",
    )
    await uow.post_transaction(txn)
    return txn


async def settle_debts(ctx: Context, merchant_id: str, currency: str) -> str:
    """The `SettleDebts` message: one unit of work of the merchant actor."""
    async with ctx.store.unit_of_work() as uow:
        txn = await settle_debt(ctx, uow, merchant_id, currency)
    return "settled" if txn is None else txn.kind.value


async def ask_settle(ctx: Context, merchant_id: str, currency: str) -> None:
    """Ask the seller's merchant actor to settle its debt now (after the caller's commit)."""
    try:
        await ctx.system.ask(MERCHANT, merchant_id, SettleDebts(currency))
    except (AskTimeout, ActorCrashed, StoreUnavailable, Fenced):
        # The merchant was slow, crashed, or is driven by another process (engine/leases.py):
        # its own next settlement collects the debt.
        log.warning(
            "merchant %s did not settle its %s debt in time: it stays owed", merchant_id, currency
        )


def _planted_collection_not_credited(
    merchant_id: str, entries: tuple[Entry, ...]
) -> tuple[Entry, ...]:
    """Planted bug (test-only seam): the collection takes the wallet money but credits revenue,
    not the debt, so the seller keeps owing it and pays it again at the next settlement."""
    taken = entries[0]
    assert taken.account == merchant_payable(merchant_id), entries
    amount = Money(taken.amount_minor, taken.currency)
    return (Entry.debit(taken.account, amount), Entry.credit(PLATFORM_REVENUE, amount))
