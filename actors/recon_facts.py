"""What the ledger knows of one settlement file: the `LedgerFacts` the pure matcher needs.

Read from committed state: each capture line's order (amount, status, the run that settled it),
each refund line's refund, each deposit's PSP batch (the run that read that batch), and, with a
window, every capture and refund payment booked in [start, end) that no file has settled yet:
the movements the file must contain (each missing one is flagged once, by the run whose window
holds its booking; a movement an earlier run already named is not expected again).

A settlement posted by the very run being repeated (after a crash between posting and
recording) does not count as "settled by an earlier file".
"""

from __future__ import annotations

import attrs

from actors.recon_facts_out import expected_out, out_facts
from engine.ids import first_id_at
from engine.ledger import PSP_CLEARING, TransactionKind
from engine.money import Money
from engine.reconciliation.line import LineKind, Settlement
from engine.reconciliation.match import Capture, DisputeFact, LedgerFacts, PayoutFact, RefundFact
from engine.reconciliation.posting import posted_by
from engine.store.port import PAGE_SIZE_MAX, UnitOfWork
from engine.store.port import ReconciledStore as Store


@attrs.frozen
class Window:
    """The bookings a file must contain: [start_ms, end_ms) of the ledger's clock."""

    start_ms: int
    end_ms: int

    def __attrs_post_init__(self) -> None:
        assert 0 <= self.start_ms <= self.end_ms, self


async def _settled_by(uow: UnitOfWork, reference: str, run_id: str) -> str | None:
    txn = await uow.get_transaction_by_reference(TransactionKind.SETTLEMENT, reference)
    if txn is None:
        return None
    by = posted_by(txn.description)
    return None if by == run_id else by


async def ledger_facts(
    store: Store, settlement: Settlement, run_id: str, window: Window | None
) -> LedgerFacts:
    captures: dict[str, Capture] = {}
    refunds: dict[str, RefundFact] = {}
    batches: dict[str, Money] = {}
    disputes: dict[str, DisputeFact] = {}
    payouts: dict[str, PayoutFact] = {}
    async with store.unit_of_work() as uow:
        await out_facts(store, uow, settlement, run_id, captures, disputes, payouts)
        for line in settlement.lines:
            ref = line.reference
            if line.kind is LineKind.CAPTURE and ref not in captures:
                await _capture(uow, ref, run_id, captures)
            elif line.kind is LineKind.REFUND and ref not in refunds:
                await _refund(uow, ref, run_id, refunds)
    for line in settlement.lines:
        if line.kind is LineKind.DEPOSIT and line.reference not in batches:
            run = await store.get_recon_run_by_batch(line.reference)
            if run is not None:
                currency, net = run.batches[line.reference]
                batches[line.reference] = Money(net, currency)
    expected: list[str] = []
    if window is not None:
        if not settlement.statements:
            expected = await _expected(store, window, run_id, captures, refunds)
        expected += await expected_out(
            store, window.start_ms, window.end_ms, run_id, settlement, disputes, payouts
        )
    return LedgerFacts(
        captures,
        tuple(expected),
        refunds=refunds,
        batches=batches,
        disputes=disputes,
        payouts=payouts,
    )


async def _capture(uow: UnitOfWork, ref: str, run_id: str, into: dict[str, Capture]) -> None:
    order = await uow.get_order(ref)
    if order is not None:
        into[ref] = Capture(ref, order.amount, order.status, await _settled_by(uow, ref, run_id))


async def _refund(uow: UnitOfWork, ref: str, run_id: str, into: dict[str, RefundFact]) -> None:
    refund = await uow.get_refund(ref)
    if refund is not None:
        into[ref] = RefundFact(
            ref,
            refund.order_id,
            refund.amount,
            refund.status,
            await _settled_by(uow, ref, run_id),
        )


async def _expected(
    store: Store,
    window: Window,
    run_id: str,
    captures: dict[str, Capture],
    refunds: dict[str, RefundFact],
) -> list[str]:
    """References of captures and refund payments booked in `window` and not yet settled.

    Pages psp_clearing's entries from the window's first possible transaction id (ids sort by
    creation time), so a run reads its window, not the whole history."""
    expected: list[tuple[TransactionKind, str]] = []
    seen: set[str] = set()
    cursor = (first_id_at("txn", window.start_ms), -1)
    while True:
        page = await store.list_entries(PSP_CLEARING, PAGE_SIZE_MAX, cursor)
        if not page:
            break
        cursor = (page[-1][0], page[-1][1])
        for txn_id, _, _ in page:
            if txn_id in seen:
                continue
            seen.add(txn_id)
            txn = await store.get_transaction(txn_id)
            assert txn is not None, txn_id
            if not window.start_ms <= txn.created_at_ms < window.end_ms:
                continue
            if txn.kind is TransactionKind.CAPTURE or txn.kind is TransactionKind.REFUND_SETTLED:
                expected.append((txn.kind, txn.reference))
    if not expected:
        return []
    due: list[str] = []
    async with store.unit_of_work() as uow:
        for kind, ref in expected:
            if kind is TransactionKind.REFUND_SETTLED:
                await _refund(uow, ref, run_id, refunds)
                fact = refunds.get(ref)
                if fact is not None and fact.settled_by is None:
                    due.append(ref)
            else:
                await _capture(uow, ref, run_id, captures)
                capture = captures.get(ref)
                if capture is not None and capture.settled_by is None:
                    due.append(ref)
    # A movement an earlier run already named (its line differed, or it was missing) is not
    # expected again: each discrepancy is flagged once.
    return [ref for ref in due if not await _named_before(store, ref, run_id)]


async def _named_before(store: Store, reference: str, run_id: str) -> bool:
    items = await store.list_recon_items(PAGE_SIZE_MAX, reference=reference)
    return any(item.run_id != run_id for item in items)
