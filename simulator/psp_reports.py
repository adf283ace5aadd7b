"""What the fake PSP reports every night: its books as canonical settlement lines, written as a
Stripe itemized report (or an Adyen Settlement Details Report) by engine/reconciliation.

Why: reconciliation must read the files real PSPs send, so the fake PSP sends those, written
by the same project writers whose output the parsers are property-tested against. A day's
report lists every capture the PSP took and every refund it paid in that day's window, each
with the contracted fee (a capture pays `CONTRACT`, a refund pays nothing), every dispute's
withdrawal (the day it opened) and a won dispute's reversal (the day it closed), all in one payout
per currency (`po_<yyyymmdd>_<currency>`), the batch a bank deposit names.
"""

from __future__ import annotations

import datetime as dt

from actors.reconciler import FeeContract
from engine.gateway import CaptureStatus, PspDisputeStatus, PspRefundStatus
from engine.money import Money
from engine.reconciliation import Format, LineKind, SettlementLine, write_adyen, write_stripe
from engine.reconciliation.match import contract_fee
from simulator.fake_psp import FakePsp

#: The PSP's price list: 2.9% (half up) plus a fixed part per currency; refunds cost nothing.
CONTRACT = FeeContract(
    fee_bps=290, fixed_minor={"USD": 30, "EUR": 25, "GBP": 20, "JPY": 30, "BHD": 100}
)
DAY_MS = 86_400_000


def day_tag(end_ms: int) -> str:
    """The settlement date of the window ending at `end_ms` (exclusive), as yyyymmdd."""
    moment = dt.datetime.fromtimestamp((end_ms - 1) / 1000, tz=dt.UTC)
    return moment.strftime("%Y%m%d")


def batch_of(tag: str, currency: str) -> str:
    return f"po_{tag}_{currency.lower()}"


def psp_lines(
    psp: FakePsp, start_ms: int, end_ms: int, tag: str, source: Format = Format.STRIPE
) -> list[SettlementLine]:
    """Every capture and paid refund the PSP booked in [start_ms, end_ms), in booking order."""
    moved: list[tuple[int, str, SettlementLine]] = []
    for capture in psp.captures.values():
        t = capture.captured_at_ms
        if capture.status is CaptureStatus.CAPTURED and start_ms <= t < end_ms:
            gross = capture.amount
            fee = contract_fee(gross, CONTRACT.fee_bps, CONTRACT.fixed_minor)
            line = SettlementLine(
                source=source,
                line_number=1,
                kind=LineKind.CAPTURE,
                reference=capture.key,
                psp_reference=f"txn_{capture.capture_id}",
                order_reference=capture.key,
                gross=gross,
                fee=fee,
                net=gross - fee,
                batch=batch_of(tag, gross.currency),
                booked_at_ms=t,
                value_at_ms=None,
            )
            moved.append((t, capture.capture_id, line))
    for refund in psp.refunds.values():
        paid = refund.settled_at_ms
        if refund.status is not PspRefundStatus.SUCCEEDED or paid is None:
            continue
        if start_ms <= paid < end_ms:
            assert refund.refund_id is not None, refund
            gross = Money(-refund.amount.minor, refund.amount.currency)
            zero = Money.zero(gross.currency)
            line = SettlementLine(
                source=source,
                line_number=1,
                kind=LineKind.REFUND,
                reference=refund.key,
                psp_reference=f"txn_{refund.refund_id}",
                order_reference=refund.order_key,
                gross=gross,
                fee=zero,
                net=gross,
                batch=batch_of(tag, gross.currency),
                booked_at_ms=paid,
                value_at_ms=None,
            )
            moved.append((paid, refund.refund_id, line))
    moved += dispute_lines(psp, start_ms, end_ms, tag, source)
    moved.sort(key=lambda m: (m[0], m[1]))
    return [line for _, _, line in moved]


def dispute_lines(
    psp: FakePsp, start_ms: int, end_ms: int, tag: str, source: Format
) -> list[tuple[int, str, SettlementLine]]:
    """Each dispute's withdrawal (when it opened) and, for a won one, its reversal (when it
    closed), of [start_ms, end_ms). The fake PSP charges no dispute fee: the fee is 0."""
    moved: list[tuple[int, str, SettlementLine]] = []
    for dispute in psp.dispute_book.disputes.values():
        steps = [(dispute.created_at_ms, LineKind.CHARGEBACK, -1, "")]
        if dispute.status is PspDisputeStatus.WON and dispute.closed_at_ms is not None:
            steps.append((dispute.closed_at_ms, LineKind.CHARGEBACK_REVERSAL, 1, "_rev"))
        for at, kind, sign, suffix in steps:
            if not start_ms <= at < end_ms:
                continue
            gross = Money(sign * dispute.amount.minor, dispute.amount.currency)
            line = SettlementLine(
                source=source,
                line_number=1,
                kind=kind,
                reference=dispute.dispute_id,
                psp_reference=f"txn_{dispute.dispute_id}{suffix}",
                order_reference=dispute.order_key,
                gross=gross,
                fee=Money.zero(gross.currency),
                net=gross,
                batch=batch_of(tag, gross.currency),
                booked_at_ms=at,
                value_at_ms=None,
            )
            moved.append((at, f"{dispute.dispute_id}{suffix}", line))
    return moved


def write_report(lines: list[SettlementLine], source: Format) -> bytes:
    if source is Format.ADYEN:
        return write_adyen(lines)
    return write_stripe(lines)
