"""Matching a settlement file against the ledger: every line and every expected movement gets
exactly one verdict, and each verdict says what to do.

Why pure: reconciliation is the last line of defence ("never trust the PSP, never trust
ourselves"), so its rules must be testable on their own, without a database or a PSP. The
caller (an actor, the CLI) reads what the ledger knows of the file's references into
`LedgerFacts`, calls `match`, and carries out the actions through the same actors and ledger
rules as live traffic.

Classes, the seed's three plus the good case:

- `matched`: the line is what the ledger expects (reference, amount, currency, fee); its
  settlement is posted (Dr bank, Dr psp_fees, Cr psp_clearing).
- `auto_fixed`: the file proves something we can repair by the normal path: the PSP captured an
  order we never heard of (its order actor asks the PSP and books it), or a PSP fee line we have
  not posted (posted).
- `manual_review`: we know the reference but the money differs: amount, currency or fee, or the
  PSP says captured what we recorded as failed. A person decides; nothing is posted.
- `investigate`: we cannot attribute it: an unknown reference, a reference twice in one file or
  already settled by an earlier file, a movement the ledger expected in this file's window that
  the file lacks.

Every item names the file line (or none, for a missing movement), the reference, what we
expected and what the file says, so a report can show it and a person can act.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping

import attrs

from engine.money import Money
from engine.reconciliation.line import LineKind, Settlement, SettlementLine
from engine.states import DisputeStatus, OrderStatus, PayoutStatus, RefundStatus


class ItemClass(enum.StrEnum):
    MATCHED = "matched"
    AUTO_FIXED = "auto_fixed"
    MANUAL_REVIEW = "manual_review"
    INVESTIGATE = "investigate"


class Reason(enum.StrEnum):
    """Why an item is in its class (one per rule; reports and tests name them)."""

    AS_EXPECTED = "as_expected"
    CAPTURE_NOT_HEARD = "capture_not_heard"  # the PSP captured; we never learned it
    FEE_NOT_POSTED = "fee_not_posted"
    AMOUNT_DIFFERS = "amount_differs"
    CURRENCY_DIFFERS = "currency_differs"
    FEE_DIFFERS = "fee_differs"
    CAPTURED_BUT_FAILED = "captured_but_failed"
    UNKNOWN_REFERENCE = "unknown_reference"
    DUPLICATE_REFERENCE = "duplicate_reference"
    ALREADY_SETTLED = "already_settled"
    MISSING_FROM_FILE = "missing_from_file"
    KIND_NOT_RECONCILED = "kind_not_reconciled"  # adjustment lines
    REFUND_NOT_HEARD = "refund_not_heard"  # the PSP paid a refund; we never learned it
    REFUNDED_BUT_FAILED = "refunded_but_failed"
    DEPOSIT_DIFFERS = "deposit_differs"  # the bank credited another sum than the batch's net
    # Disputes and seller payouts (engine/reconciliation/match_out.py).
    DISPUTE_NOT_HEARD = "dispute_not_heard"  # the PSP withdrew or reinstated; we never learned it
    REVERSED_BUT_LOST = "reversed_but_lost"  # the PSP gave back a dispute we recorded LOST
    PAYOUT_NOT_PAID = "payout_not_paid"  # the bank paid a payout we record as failed or unsent
    PAYOUT_NOT_HEARD = (
        "payout_not_heard"  # the bank paid or returned it; the provider's word is late
    )


class Action(enum.StrEnum):
    """What carrying out an item means (the caller does it, through the normal path)."""

    POST_SETTLEMENT = "post_settlement"  # Dr bank net / Dr psp_fees fee / Cr psp_clearing gross
    COMPLETE_ORDER = "complete_order"  # the order actor asks the PSP, books, then settle
    POST_FEE = "post_fee"  # Dr psp_fees / Cr psp_clearing
    QUERY_REFUND = "query_refund"  # the refund actor asks the PSP, books, then settle
    QUERY_DISPUTE = "query_dispute"  # the order's refund actor asks the PSP, books, then settle
    QUERY_PAYOUT = "query_payout"  # the merchant actor asks the payout provider and books
    #: A matched line that posts nothing (a bank's seller payout): its stored item is the trace
    #: that this line was matched, so a later file naming it again is `already_settled`.
    KEEP_MATCH = "keep_match"
    NONE = "none"


@attrs.frozen
class Capture:
    """What the ledger knows of one order the PSP may settle."""

    order_id: str
    amount: Money
    status: OrderStatus
    #: The batch (file) that already settled it, if one did.
    settled_by: str | None = None


@attrs.frozen
class RefundFact:
    """What the ledger knows of one refund the PSP may settle (`amount` is positive)."""

    refund_id: str
    order_id: str
    amount: Money
    status: RefundStatus
    settled_by: str | None = None


@attrs.frozen
class DisputeFact:
    """What the ledger knows of one dispute (`amount` is positive: what the PSP withdrew)."""

    dispute_id: str
    order_id: str
    amount: Money
    status: DisputeStatus
    #: The run that settled its withdrawal line, and its reversal line.
    settled_by: str | None = None
    reversal_settled_by: str | None = None


@attrs.frozen
class PayoutFact:
    """What the ledger knows of one seller payout (`amount` is positive: what leaves us)."""

    payout_id: str
    amount: Money
    status: PayoutStatus
    settled_by: str | None = None
    reversal_settled_by: str | None = None


@attrs.frozen
class LedgerFacts:
    """The ledger's side of one file: the captures its lines name, and those it must contain.

    `captures` holds every order a line names (and may hold more); `expected` is the orders the
    ledger says the PSP must settle in this file's window (captured, unsettled, old enough).
    `fee_bps` / `fee_fixed_minor` are the PSP's contracted fee per capture (None: no contract
    known, so no fee is judged).
    """

    captures: Mapping[str, Capture]
    expected: Collection[str] = ()
    fee_bps: int | None = None
    fee_fixed_minor: Mapping[str, int] = attrs.Factory(dict)
    #: The refunds the file's refund lines name, and the expected ones (`expected` names them
    #: too; a missing refund is expected at minus its amount).
    refunds: Mapping[str, RefundFact] = attrs.Factory(dict)
    #: PSP batch (payout) id -> the net the PSP's file of that batch said it would pay: what a
    #: bank deposit referencing the batch must be.
    batches: Mapping[str, Money] = attrs.Factory(dict)
    #: The disputes the file's chargeback lines name (a reversal is expected once WON).
    disputes: Mapping[str, DisputeFact] = attrs.Factory(dict)
    #: The seller payouts a bank statement's payout lines name.
    payouts: Mapping[str, PayoutFact] = attrs.Factory(dict)
    #: Expected reversals (keys `<id>:reversal` in `expected`) name these.


@attrs.frozen
class Item:
    klass: ItemClass
    reason: Reason
    reference: str
    action: Action
    #: The file's line (None for a movement missing from the file).
    line_number: int | None = None
    expected: Money | None = None
    found: Money | None = None
    detail: str = ""


@attrs.frozen
class Matching:
    """The verdict on a whole file: one item per line, plus one per missing movement."""

    items: tuple[Item, ...]

    def count(self, klass: ItemClass) -> int:
        return sum(1 for item in self.items if item.klass is klass)

    def money(self, klass: ItemClass) -> dict[str, int]:
        """Per currency, the minor units of the items of `klass` (what the file says, else what
        we expected)."""
        totals: dict[str, int] = {}
        for item in self.items:
            amount = item.found if item.found is not None else item.expected
            if item.klass is klass and amount is not None:
                totals[amount.currency] = totals.get(amount.currency, 0) + amount.minor
        return dict(sorted(totals.items()))

    @property
    def clean(self) -> bool:
        """Nothing needs a person."""
        return not any(
            item.klass in (ItemClass.MANUAL_REVIEW, ItemClass.INVESTIGATE) for item in self.items
        )


def expected_fee(gross: Money, facts: LedgerFacts) -> Money | None:
    """The contracted fee for a capture of `gross`, rounded half up to a minor unit, and never
    more than the gross."""
    if facts.fee_bps is None:
        return None
    return contract_fee(gross, facts.fee_bps, facts.fee_fixed_minor)


def contract_fee(gross: Money, fee_bps: int, fee_fixed_minor: Mapping[str, int]) -> Money:
    """`fee_bps` of `gross` (half up) plus the currency's fixed part, capped at the gross."""
    assert gross.minor >= 0, gross
    variable, remainder = divmod(gross.minor * fee_bps, 10_000)
    if 2 * remainder >= 10_000:
        variable += 1
    fee = variable + fee_fixed_minor.get(gross.currency, 0)
    return Money(min(fee, gross.minor), gross.currency)


def settled_or_differs(
    line: SettlementLine, expected: Money, settled_by: str | None
) -> Item | None:
    """The item when an earlier file settled the line's movement (investigate) or the line's
    currency or amount is not the expected (manual review); None when neither."""
    if settled_by is not None:
        detail = f"settled by {settled_by}"
        return item_on_line(
            ItemClass.INVESTIGATE, Reason.ALREADY_SETTLED, Action.NONE, line, expected, detail
        )
    review = ItemClass.MANUAL_REVIEW
    if line.currency != expected.currency:
        return item_on_line(review, Reason.CURRENCY_DIFFERS, Action.NONE, line, expected)
    if line.gross != expected:
        return item_on_line(review, Reason.AMOUNT_DIFFERS, Action.NONE, line, expected)
    return None


def item_on_line(
    klass: ItemClass,
    reason: Reason,
    action: Action,
    line: SettlementLine,
    expected: Money | None = None,
    detail: str = "",
) -> Item:
    return Item(
        klass,
        reason,
        line.reference,
        action,
        line_number=line.line_number,
        expected=expected,
        found=line.gross,
        detail=detail,
    )


def _capture_item(line: SettlementLine, facts: LedgerFacts, seen: set[str]) -> Item:
    ref = line.reference
    if ref in seen:
        detail = "the reference is on an earlier line of this file"
        return item_on_line(
            ItemClass.INVESTIGATE, Reason.DUPLICATE_REFERENCE, Action.NONE, line, detail=detail
        )
    seen.add(ref)
    capture = facts.captures.get(ref)
    if capture is None:
        return item_on_line(ItemClass.INVESTIGATE, Reason.UNKNOWN_REFERENCE, Action.NONE, line)
    expected = capture.amount
    if (early := settled_or_differs(line, expected, capture.settled_by)) is not None:
        return early
    review = ItemClass.MANUAL_REVIEW
    fee = expected_fee(line.gross, facts)
    if fee is not None and line.fee != fee:
        detail = f"fee {line.fee}, contract {fee}"
        return item_on_line(review, Reason.FEE_DIFFERS, Action.NONE, line, expected, detail)
    if capture.status is OrderStatus.SUCCESS:
        return item_on_line(
            ItemClass.MATCHED, Reason.AS_EXPECTED, Action.POST_SETTLEMENT, line, expected
        )
    if capture.status is OrderStatus.EXECUTING:
        return item_on_line(
            ItemClass.AUTO_FIXED, Reason.CAPTURE_NOT_HEARD, Action.COMPLETE_ORDER, line, expected
        )
    detail = f"the order is {capture.status}"
    return item_on_line(review, Reason.CAPTURED_BUT_FAILED, Action.NONE, line, expected, detail)


def _refund_item(line: SettlementLine, facts: LedgerFacts, seen: set[str]) -> Item:
    ref = line.reference
    if ref in seen:
        detail = "the reference is on an earlier line of this file"
        return item_on_line(
            ItemClass.INVESTIGATE, Reason.DUPLICATE_REFERENCE, Action.NONE, line, detail=detail
        )
    seen.add(ref)
    refund = facts.refunds.get(ref)
    if refund is None:
        return item_on_line(ItemClass.INVESTIGATE, Reason.UNKNOWN_REFERENCE, Action.NONE, line)
    expected = Money(-refund.amount.minor, refund.amount.currency)
    if (early := settled_or_differs(line, expected, refund.settled_by)) is not None:
        return early
    review = ItemClass.MANUAL_REVIEW
    if facts.fee_bps is not None and line.fee.minor != 0:
        detail = f"fee {line.fee}, contract 0 on a refund"
        return item_on_line(review, Reason.FEE_DIFFERS, Action.NONE, line, expected, detail)
    if refund.status is RefundStatus.SUCCEEDED:
        return item_on_line(
            ItemClass.MATCHED, Reason.AS_EXPECTED, Action.POST_SETTLEMENT, line, expected
        )
    if refund.status in (RefundStatus.REQUESTED, RefundStatus.SUBMITTED):
        return item_on_line(
            ItemClass.AUTO_FIXED, Reason.REFUND_NOT_HEARD, Action.QUERY_REFUND, line, expected
        )
    detail = f"the refund is {refund.status}"
    return item_on_line(review, Reason.REFUNDED_BUT_FAILED, Action.NONE, line, expected, detail)


def _deposit_item(line: SettlementLine, facts: LedgerFacts, seen: set[str]) -> Item:
    """A bank deposit names the PSP batch (payout) it pays: it must be that batch's net."""
    ref = line.reference
    if ref in seen:
        detail = "the reference is on an earlier line of this file"
        return item_on_line(
            ItemClass.INVESTIGATE, Reason.DUPLICATE_REFERENCE, Action.NONE, line, detail=detail
        )
    seen.add(ref)
    expected = facts.batches.get(ref)
    if expected is None:
        return item_on_line(ItemClass.INVESTIGATE, Reason.UNKNOWN_REFERENCE, Action.NONE, line)
    if line.net != expected:
        return item_on_line(
            ItemClass.MANUAL_REVIEW, Reason.DEPOSIT_DIFFERS, Action.NONE, line, expected
        )
    return item_on_line(ItemClass.MATCHED, Reason.AS_EXPECTED, Action.NONE, line, expected)


def match(settlement: Settlement, facts: LedgerFacts) -> Matching:
    """One item per line of `settlement`, then one per expected capture the file lacks."""
    from engine.reconciliation.match_out import OUT_KINDS, missing_out, out_item

    items: list[Item] = []
    seen: set[str] = set()
    for line in settlement.lines:
        if line.kind is LineKind.CAPTURE:
            items.append(_capture_item(line, facts, seen))
        elif line.kind is LineKind.REFUND:
            items.append(_refund_item(line, facts, seen))
        elif line.kind is LineKind.DEPOSIT:
            items.append(_deposit_item(line, facts, seen))
        elif line.kind in OUT_KINDS:
            items.append(out_item(line, facts, seen))
        elif line.kind is LineKind.FEE:
            items.append(
                item_on_line(ItemClass.AUTO_FIXED, Reason.FEE_NOT_POSTED, Action.POST_FEE, line)
            )
        else:
            detail = f"{line.kind} lines are not reconciled"
            items.append(
                item_on_line(
                    ItemClass.INVESTIGATE,
                    Reason.KIND_NOT_RECONCILED,
                    Action.NONE,
                    line,
                    None,
                    detail,
                )
            )
    for reference in sorted(set(facts.expected) - seen):
        out = missing_out(reference, facts)
        if out is not None:
            items.append(out)
            continue
        capture = facts.captures.get(reference)
        refund = facts.refunds.get(reference)
        amount = None
        if capture is not None:
            amount = capture.amount
        elif refund is not None:
            amount = Money(-refund.amount.minor, refund.amount.currency)
        what = "refunded" if refund is not None and capture is None else "captured"
        items.append(
            Item(
                ItemClass.INVESTIGATE,
                Reason.MISSING_FROM_FILE,
                reference,
                Action.NONE,
                expected=amount,
                detail=f"{what} and due in this file's window, not in the file",
            )
        )
    return Matching(tuple(items))
