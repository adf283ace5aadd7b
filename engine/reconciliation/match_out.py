"""Matching the lines that move money out: the PSP's dispute withdrawals and reversals, and the
bank's seller payouts and their returns (pure, like engine/reconciliation/match.py).

Why apart: a dispute or a payout line names an aggregate of its own (the PSP's dispute id, our
payout id), with a life of its own (OPEN -> WON | LOST; ... -> PAID -> RETURNED), and two lines
may name one of them (the withdrawal and its reversal; the payout and its return). So a line is
known by its *settlement key*: the reference, with `:reversal` for a reversal line
(`settlement_key`), which is also its ledger posting's reference and what "seen earlier in
this file" and "settled by an earlier file" are judged on.

Disputes (Stripe `dispute` / `dispute_reversal`, Adyen `Chargeback` / `ChargebackReversed`):

- a withdrawal (gross = -amount), the dispute of any status: matched `as_expected`, posts
  Dr psp_clearing / Cr bank_cash;
- a reversal (gross = +amount) of a WON dispute: matched `as_expected`, posts Dr bank_cash /
  Cr psp_clearing; of an OPEN one (we never heard the win): auto_fixed `dispute_not_heard`,
  the order's refund actor asks the PSP (QueryDispute), and it posts; of a LOST one:
  manual_review `reversed_but_lost`;
- either, of a dispute we have no record of, on an order captured here, in the order's
  currency and at most its amount: auto_fixed `dispute_not_heard` (the refund actor asks the
  PSP and records it, as its lost first webhook would have) and it posts; of no captured
  order of ours: investigate `unknown_reference`.

Amount and currency are judged against the dispute (manual_review `amount_differs` /
`currency_differs`); under a fee contract a dispute line's fee must be 0 (the fake PSP charges
no dispute fee; a PSP that does would add it to the contract) or it is `fee_differs`.

Seller payouts (camt.053 debits referenced by our payout id in `EndToEndId`), which post
nothing (the payout's own posting already moved bank_cash); a matched one is stored as an item
(action `keep_match`, resolved) so that a later statement naming it again is `already_settled`:

- a payout (gross = -amount) PAID or RETURNED here: matched `as_expected`; SUBMITTED or
  FUNDS_RESERVED (the provider's notice is late or lost): auto_fixed `payout_not_heard`, the
  merchant actor asks the provider (QueryPayout); REQUESTED or FAILED: manual_review
  `payout_not_paid`;
- a return (`RvslInd`, gross = +amount) of a RETURNED payout: matched; of a PAID, SUBMITTED or
  FUNDS_RESERVED one: auto_fixed `payout_not_heard`; else manual_review `payout_not_paid`;
- either, of no payout of ours: investigate `unknown_reference`.

A payout PAID in the statement's window that the statement lacks is investigate
`missing_from_file`, as a missing capture is.
"""

from __future__ import annotations

from engine.money import Money
from engine.reconciliation.line import LineKind, SettlementLine
from engine.reconciliation.match import (
    Action,
    DisputeFact,
    Item,
    ItemClass,
    LedgerFacts,
    PayoutFact,
    Reason,
    item_on_line,
    settled_or_differs,
)
from engine.states import DisputeStatus, OrderStatus, PayoutStatus

#: The line kinds this module judges.
OUT_KINDS = frozenset(
    {
        LineKind.CHARGEBACK,
        LineKind.CHARGEBACK_REVERSAL,
        LineKind.PAYOUT,
        LineKind.PAYOUT_REVERSAL,
    }
)
REVERSALS = frozenset({LineKind.CHARGEBACK_REVERSAL, LineKind.PAYOUT_REVERSAL})
#: The payout states in which the bank's word (paid; returned) is news the provider has not
#: told us yet: the merchant actor asks the provider (QueryPayout), as after a lost notice.
UNHEARD_PAYOUT: dict[bool, frozenset[PayoutStatus]] = {
    False: frozenset({PayoutStatus.FUNDS_RESERVED, PayoutStatus.SUBMITTED}),
    True: frozenset({PayoutStatus.FUNDS_RESERVED, PayoutStatus.SUBMITTED, PayoutStatus.PAID}),
}
#: What a reversal line's settlement key appends to its reference.
REVERSAL_SUFFIX = ":reversal"


def settlement_key(kind: LineKind, reference: str) -> str:
    """The key a line is known by: its reference, with `:reversal` for a reversal line."""
    return f"{reference}{REVERSAL_SUFFIX}" if kind in REVERSALS else reference


def reference_of_key(key: str) -> str:
    return key.removesuffix(REVERSAL_SUFFIX)


def out_item(line: SettlementLine, facts: LedgerFacts, seen: set[str]) -> Item:
    """The item of one dispute or payout line (`seen`: settlement keys met earlier)."""
    assert line.kind in OUT_KINDS, line.kind
    key = settlement_key(line.kind, line.reference)
    if key in seen:
        detail = "the reference is on an earlier line of this file"
        return item_on_line(
            ItemClass.INVESTIGATE, Reason.DUPLICATE_REFERENCE, Action.NONE, line, None, detail
        )
    seen.add(key)
    if line.kind in (LineKind.CHARGEBACK, LineKind.CHARGEBACK_REVERSAL):
        return _dispute_item(line, facts)
    return _payout_item(line, facts)


def _signed(amount: Money, line: SettlementLine) -> Money:
    """`amount` (positive) with the sign the line's kind carries."""
    return amount if line.kind in REVERSALS else Money(-amount.minor, amount.currency)


def _money_differs(
    line: SettlementLine, expected: Money, facts: LedgerFacts, settled_by: str | None
) -> Item | None:
    if (early := settled_or_differs(line, expected, settled_by)) is not None:
        return early
    review = ItemClass.MANUAL_REVIEW
    if facts.fee_bps is not None and line.fee.minor != 0:
        detail = f"fee {line.fee}, contract 0 on a {line.kind}"
        return item_on_line(review, Reason.FEE_DIFFERS, Action.NONE, line, expected, detail)
    return None


def _dispute_item(line: SettlementLine, facts: LedgerFacts) -> Item:
    dispute = facts.disputes.get(line.reference)
    if dispute is None:
        return _unheard_dispute(line, facts)
    expected = _signed(dispute.amount, line)
    reversal = line.kind is LineKind.CHARGEBACK_REVERSAL
    settled_by = dispute.reversal_settled_by if reversal else dispute.settled_by
    differs = _money_differs(line, expected, facts, settled_by)
    if differs is not None:
        return differs
    if not reversal or dispute.status is DisputeStatus.WON:
        return item_on_line(
            ItemClass.MATCHED, Reason.AS_EXPECTED, Action.POST_SETTLEMENT, line, expected
        )
    if dispute.status is DisputeStatus.OPEN:
        return item_on_line(
            ItemClass.AUTO_FIXED, Reason.DISPUTE_NOT_HEARD, Action.QUERY_DISPUTE, line, expected
        )
    detail = f"the dispute is {dispute.status}"
    return item_on_line(
        ItemClass.MANUAL_REVIEW, Reason.REVERSED_BUT_LOST, Action.NONE, line, expected, detail
    )


def _unheard_dispute(line: SettlementLine, facts: LedgerFacts) -> Item:
    """A dispute we have no record of: repairable when it is of an order captured here."""
    order = facts.captures.get(line.order_reference or "")
    if order is None or order.status is not OrderStatus.SUCCESS:
        return item_on_line(ItemClass.INVESTIGATE, Reason.UNKNOWN_REFERENCE, Action.NONE, line)
    ceiling = order.amount
    if line.currency != ceiling.currency:
        return item_on_line(
            ItemClass.MANUAL_REVIEW, Reason.CURRENCY_DIFFERS, Action.NONE, line, ceiling
        )
    if not 0 < abs(line.gross.minor) <= ceiling.minor:
        detail = f"a dispute of order {order.order_id} cannot exceed its capture"
        return item_on_line(
            ItemClass.MANUAL_REVIEW, Reason.AMOUNT_DIFFERS, Action.NONE, line, ceiling, detail
        )
    if facts.fee_bps is not None and line.fee.minor != 0:
        detail = f"fee {line.fee}, contract 0 on a {line.kind}"
        return item_on_line(
            ItemClass.MANUAL_REVIEW, Reason.FEE_DIFFERS, Action.NONE, line, None, detail
        )
    detail = f"dispute of order {order.order_id} not recorded: asking the PSP"
    return item_on_line(
        ItemClass.AUTO_FIXED, Reason.DISPUTE_NOT_HEARD, Action.QUERY_DISPUTE, line, None, detail
    )


def _payout_item(line: SettlementLine, facts: LedgerFacts) -> Item:
    payout = facts.payouts.get(line.reference)
    if payout is None:
        return item_on_line(ItemClass.INVESTIGATE, Reason.UNKNOWN_REFERENCE, Action.NONE, line)
    expected = _signed(payout.amount, line)
    returned = line.kind is LineKind.PAYOUT_REVERSAL
    settled_by = payout.reversal_settled_by if returned else payout.settled_by
    if (early := settled_or_differs(line, expected, settled_by)) is not None:
        return early
    review = ItemClass.MANUAL_REVIEW
    detail = f"the payout is {payout.status}"
    matched = PayoutStatus.RETURNED if returned else PayoutStatus.PAID
    if payout.status is matched or (not returned and payout.status is PayoutStatus.RETURNED):
        return item_on_line(
            ItemClass.MATCHED, Reason.AS_EXPECTED, Action.KEEP_MATCH, line, expected
        )
    if payout.status in UNHEARD_PAYOUT[returned]:
        return item_on_line(
            ItemClass.AUTO_FIXED,
            Reason.PAYOUT_NOT_HEARD,
            Action.QUERY_PAYOUT,
            line,
            expected,
            detail,
        )
    return item_on_line(review, Reason.PAYOUT_NOT_PAID, Action.NONE, line, expected, detail)


def missing_out(key: str, facts: LedgerFacts) -> Item | None:
    """The missing_from_file item of an expected dispute or payout movement (None: `key` is
    not one; a capture's or refund's)."""
    reference = reference_of_key(key)
    reversal = key != reference
    fact: DisputeFact | PayoutFact | None = facts.disputes.get(reference)
    what = "dispute reversal" if reversal else "dispute withdrawal"
    if fact is None:
        fact = facts.payouts.get(reference)
        what = "payout return" if reversal else "payout"
    if fact is None:
        return None
    amount = fact.amount if reversal else Money(-fact.amount.minor, fact.amount.currency)
    return Item(
        ItemClass.INVESTIGATE,
        Reason.MISSING_FROM_FILE,
        reference,
        Action.NONE,
        expected=amount,
        detail=f"{what} due in this file's window, not in the file",
    )
