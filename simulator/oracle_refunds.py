"""The oracle's refund invariants, recomputed from the PSP's books and the committed rows.

- `at_most_one_psp_refund_per_refund`: every refund the PSP holds is keyed by one of our refund
  ids, for that refund's order's capture and amount. The PSP deduplicates by key, so a refund
  id can make one PSP refund at most; a refund under any other key is a second one (a retry
  that changed its key). Checked every virtual minute and at the end.
- `refunds_never_exceed_captured`: per order, what is refunded or held for a refund never
  exceeds the capture: at the PSP (its refunds on the capture, not failed), in the engine (its
  refunds not FAILED) and in the ledger (refund transactions minus their reversals).
- `every_refund_terminal`: once the faults stopped every refund is SUCCEEDED or FAILED, and
  agrees with the PSP: SUCCEEDED exactly when the PSP's refund under its id succeeded, FAILED
  only when the PSP failed or refused it (never on silence).
- `money_conserved`: per currency, to the minor unit, what the PSP captured equals what the
  sellers hold (available + reserved, less what they owe: `merchant_receivable`) + the
  platform's revenue + refunds in flight (`refunds_clearing`) + what the PSP refunded.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from engine.gateway import PspRefundStatus
from engine.ledger import (
    CHARGEBACKS,
    MERCHANT_PAYABLE,
    MERCHANT_RECEIVABLE,
    MERCHANT_RESERVED,
    PLATFORM_REVENUE,
    REFUNDS_CLEARING,
    Transaction,
    TransactionKind,
)
from engine.records import PaymentOrder, Refund
from engine.states import RefundStatus, is_terminal
from simulator.fake_psp import FakePsp

REFUND_INVARIANTS = (
    "at_most_one_psp_refund_per_refund",
    "refunds_never_exceed_captured",
    "every_refund_terminal",
    "money_conserved",
)

Found = list[tuple[str, str, list[str]]]


def check_psp_refund_keys(
    psp: FakePsp, refunds: Mapping[str, Refund], orders: Mapping[str, PaymentOrder]
) -> Found:
    bad: list[str] = []
    for key, held in psp.refunds.items():
        refund = refunds.get(key)
        order = None if refund is None else orders.get(refund.order_id)
        if (
            refund is None
            or order is None
            or order.psp_capture_id != held.capture_id
            or refund.amount != held.amount
        ):
            bad.append(
                f"PSP refund {held.refund_id} of {held.amount} on capture {held.capture_id} "
                f"({held.status}) has key {key}, not the id of our refund of that amount"
            )
    if not bad:
        return []
    return [
        (
            "at_most_one_psp_refund_per_refund",
            f"{len(bad)} PSP refund(s) not keyed by their refund id: a retry refunds again",
            sorted(bad),
        )
    ]


def check_refunds_final(
    psp: FakePsp,
    refunds: Mapping[str, Refund],
    orders: Mapping[str, PaymentOrder],
    txns: Iterable[Transaction],
    trial: Mapping[tuple[str, str], int],
    paid_out: Mapping[str, int] | None = None,
) -> Found:
    found = check_psp_refund_keys(psp, refunds, orders)
    found += _never_exceed(psp, refunds, orders, txns)

    unfinished: list[str] = []
    for refund in sorted(refunds.values(), key=lambda r: r.refund_id):
        held = psp.refunds.get(refund.refund_id)
        said = None if held is None else held.status
        if not is_terminal(refund.status):
            unfinished.append(f"refund {refund.refund_id} {refund.status} (PSP: {said})")
        elif refund.status is RefundStatus.SUCCEEDED and said is not PspRefundStatus.SUCCEEDED:
            unfinished.append(f"refund {refund.refund_id} SUCCEEDED but the PSP says {said}")
        elif refund.status is RefundStatus.FAILED and said is not PspRefundStatus.FAILED:
            unfinished.append(f"refund {refund.refund_id} FAILED but the PSP says {said}")
    if unfinished:
        found.append(
            (
                "every_refund_terminal",
                f"{len(unfinished)} refund(s) not final or not the PSP's word after faults stopped",
                unfinished,
            )
        )

    found += money_conserved(psp, trial, paid_out or {})
    return found


def _never_exceed(
    psp: FakePsp,
    refunds: Mapping[str, Refund],
    orders: Mapping[str, PaymentOrder],
    txns: Iterable[Transaction],
) -> Found:
    over: list[str] = []
    at_psp: Counter[str] = Counter()
    for held in psp.refunds.values():
        if held.refund_id is not None and held.status is not PspRefundStatus.FAILED:
            at_psp[held.capture_id] += held.amount.minor
    for capture in psp.captures.values():
        if at_psp[capture.capture_id] > capture.amount.minor:
            over.append(
                f"PSP: capture {capture.capture_id} of {capture.amount} has "
                f"{at_psp[capture.capture_id]} minor units refunded or held"
            )
    in_engine: Counter[str] = Counter()
    for refund in refunds.values():
        if refund.status is not RefundStatus.FAILED:
            in_engine[refund.order_id] += refund.amount_minor
    in_ledger: Counter[str] = Counter()
    for txn in txns:
        if txn.kind not in (TransactionKind.REFUND, TransactionKind.REFUND_REVERSED):
            continue
        of = refunds.get(txn.reference)
        owed = -sum(e.amount_minor for e in txn.entries if e.account == REFUNDS_CLEARING)
        key = of.order_id if of is not None else f"(no refund {txn.reference})"
        in_ledger[key] += owed
    for order_id in sorted(set(in_engine) | set(in_ledger)):
        order = orders.get(order_id)
        captured = 0 if order is None else order.amount_minor
        for where, total in (("engine", in_engine[order_id]), ("ledger", in_ledger[order_id])):
            if total > captured:
                over.append(f"{where}: order {order_id} refunds {total} of {captured} captured")
    if not over:
        return []
    return [("refunds_never_exceed_captured", "more refunded than captured", sorted(over))]


def money_conserved(
    psp: FakePsp, trial: Mapping[tuple[str, str], int], paid_out: Mapping[str, int]
) -> Found:
    """`paid_out`: what the payout provider paid out and kept paid, per currency (payouts,
    simulator/oracle_payouts.py, which checks the same sum from the wallets)."""
    captured = psp.captured_total()
    # What disputes keep withdrawn counts as paid back too (simulator/oracle_disputes.py), and
    # what open chargebacks cost us is debited to `chargebacks` (zero without disputes).
    refunded = psp.refund_book.total() + psp.dispute_book.withdrawn_total()
    held: Counter[str] = Counter()  # sellers + platform + in flight, as the ledger has them
    for (account, currency), total in trial.items():
        base = account.partition(":")[0]
        if base in (MERCHANT_PAYABLE, MERCHANT_RESERVED, MERCHANT_RECEIVABLE) or account in (
            PLATFORM_REVENUE,
            REFUNDS_CLEARING,
            CHARGEBACKS,
        ):
            held[currency] -= total  # liabilities and revenue are credits; a receivable a debit
    for currency, minor in paid_out.items():
        held[currency] += minor
    off: list[str] = []
    for currency in sorted(set(captured) | set(held) | set(refunded)):
        if captured[currency] != held[currency] + refunded[currency]:
            off.append(
                f"{currency}: PSP captured {captured[currency]}, ledger holds {held[currency]} "
                f"+ PSP refunded {refunded[currency]} minor units"
            )
    if not off:
        return []
    return [("money_conserved", "money was created or destroyed", off)]
