"""What the ledger knows of a file's dispute and payout lines (actors/recon_facts.py reads the
captures and refunds): each line's dispute or payout, the order of a dispute we never heard
of, and, with a window, the dispute and payout movements booked in it that the file must list.

A dispute line is settled by a posting under its settlement key (engine/reconciliation/
match_out.py): `<dispute id>` for the withdrawal, `<dispute id>:reversal` for the reversal.
A payout line posts nothing (the payout's own postings moved bank_cash): its matched item is
stored (engine/reconciliation/run.py), the trace that settles it; so a bank statement's
expected payouts are those whose PAYOUT_POST (or PAYOUT_RETURN) is booked in the window in the
statement's currencies; a statement names each once.
"""

from __future__ import annotations

from engine.ids import first_id_at
from engine.ledger import BANK_CASH, PSP_CLEARING, TransactionKind
from engine.money import Money
from engine.reconciliation.line import LineKind, Settlement
from engine.reconciliation.match import Capture, DisputeFact, ItemClass, PayoutFact
from engine.reconciliation.match_out import REVERSAL_SUFFIX
from engine.reconciliation.posting import posted_by
from engine.store.port import PAGE_SIZE_MAX, UnitOfWork
from engine.store.port import ReconciledStore as Store

#: Ledger kinds whose psp_clearing or bank_cash entry a dispute or payout line must match:
#: kind -> (account, whether it is the reversal).
EXPECTED_KINDS: dict[TransactionKind, tuple[str, bool]] = {
    TransactionKind.CHARGEBACK: (PSP_CLEARING, False),
    TransactionKind.CHARGEBACK_REINSTATED: (PSP_CLEARING, True),
    TransactionKind.PAYOUT_POST: (BANK_CASH, False),
    TransactionKind.PAYOUT_RETURN: (BANK_CASH, True),
}


async def _settled(uow: UnitOfWork, key: str, run_id: str) -> str | None:
    txn = await uow.get_transaction_by_reference(TransactionKind.SETTLEMENT, key)
    if txn is None:
        return None
    by = posted_by(txn.description)
    return None if by == run_id else by


async def dispute_fact(uow: UnitOfWork, ref: str, run_id: str) -> DisputeFact | None:
    dispute = await uow.get_dispute(ref)
    if dispute is None:
        return None
    return DisputeFact(
        ref,
        dispute.order_id,
        dispute.amount,
        dispute.status,
        await _settled(uow, ref, run_id),
        await _settled(uow, f"{ref}{REVERSAL_SUFFIX}", run_id),
    )


async def payout_fact(
    uow: UnitOfWork, ref: str, run_id: str, store: Store | None = None
) -> PayoutFact | None:
    payout = await uow.get_payout(ref)
    if payout is None:
        return None
    matched_by: dict[bool, str] = {}
    if store is not None:
        for item in await store.list_recon_items(PAGE_SIZE_MAX, reference=ref):
            if item.klass is ItemClass.MATCHED and item.run_id != run_id:
                matched_by.setdefault(_is_reversal_item(item.detail, item.found), item.run_id)
    return PayoutFact(
        ref, payout.amount, payout.status, matched_by.get(False), matched_by.get(True)
    )


async def out_facts(
    store: Store,
    uow: UnitOfWork,
    settlement: Settlement,
    run_id: str,
    captures: dict[str, Capture],
    disputes: dict[str, DisputeFact],
    payouts: dict[str, PayoutFact],
) -> None:
    """Fill `disputes` and `payouts` for the file's lines (and `captures` with the order of a
    dispute we have no record of)."""
    for line in settlement.lines:
        ref = line.reference
        if line.kind in (LineKind.CHARGEBACK, LineKind.CHARGEBACK_REVERSAL):
            if ref in disputes:
                continue
            fact = await dispute_fact(uow, ref, run_id)
            if fact is not None:
                disputes[ref] = fact
            elif line.order_reference and line.order_reference not in captures:
                order = await uow.get_order(line.order_reference)
                if order is not None:
                    captures[order.order_id] = Capture(order.order_id, order.amount, order.status)
        elif line.kind in (LineKind.PAYOUT, LineKind.PAYOUT_REVERSAL) and ref not in payouts:
            payout = await payout_fact(uow, ref, run_id, store)
            if payout is not None:
                payouts[ref] = payout


async def expected_out(
    store: Store,
    start_ms: int,
    end_ms: int,
    run_id: str,
    settlement: Settlement,
    disputes: dict[str, DisputeFact],
    payouts: dict[str, PayoutFact],
) -> list[str]:
    """Settlement keys of the dispute movements (for a PSP report) or payout movements (for a
    bank statement) booked in [start_ms, end_ms) and not settled yet."""
    bank = bool(settlement.statements)
    account = BANK_CASH if bank else PSP_CLEARING
    currencies = {s.currency for s in settlement.statements}
    keys: list[tuple[TransactionKind, str]] = []
    seen: set[str] = set()
    cursor = (first_id_at("txn", start_ms), -1)
    while True:
        page = await store.list_entries(account, PAGE_SIZE_MAX, cursor)
        if not page:
            break
        cursor = (page[-1][0], page[-1][1])
        for txn_id, _, entry in page:
            if txn_id in seen:
                continue
            seen.add(txn_id)
            txn = await store.get_transaction(txn_id)
            assert txn is not None, txn_id
            if txn.kind not in EXPECTED_KINDS or EXPECTED_KINDS[txn.kind][0] != account:
                continue
            if not start_ms <= txn.created_at_ms < end_ms:
                continue
            if bank and entry.currency not in currencies:
                continue
            keys.append((txn.kind, txn.reference))
    due: list[str] = []
    async with store.unit_of_work() as uow:
        for kind, ref in keys:
            reversal = EXPECTED_KINDS[kind][1]
            key = f"{ref}{REVERSAL_SUFFIX}" if reversal else ref
            if bank:
                payout = payouts.get(ref) or await payout_fact(uow, ref, run_id)
                if payout is not None:
                    payouts[ref] = payout
                    due.append(key)
                continue
            dispute = disputes.get(ref) or await dispute_fact(uow, ref, run_id)
            if dispute is None:
                continue
            disputes[ref] = dispute
            if (dispute.reversal_settled_by if reversal else dispute.settled_by) is None:
                due.append(key)
    return [key for key in due if not await _named_before(store, key, run_id)]


async def _named_before(store: Store, key: str, run_id: str) -> bool:
    """An earlier run already named this movement (the item's reference is the dispute or
    payout id; its detail says whether it was the reversal)."""
    reference = key.removesuffix(REVERSAL_SUFFIX)
    reversal = key != reference
    items = await store.list_recon_items(PAGE_SIZE_MAX, reference=reference)
    return any(
        item.run_id != run_id and _is_reversal_item(item.detail, item.found) == reversal
        for item in items
    )


def _is_reversal_item(detail: str, found: Money | None) -> bool:
    """Whether a stored item was about the reversal movement: a reversal line's found gross
    is positive; a missing reversal's detail says so."""
    if found is not None:
        return found.minor > 0
    return "reversal" in detail or "return" in detail
