"""The refund invariants as functions, on small hand-made states: each holds on a right state
and reports the wrong one (so none of them is blind)."""

from __future__ import annotations

import attrs
from hypothesis import given
from hypothesis import strategies as st

from engine.gateway import CaptureStatus
from engine.ledger import (
    Transaction,
    TransactionKind,
    capture_entries,
    refund_entries,
    refund_settled_entries,
)
from engine.money import Money
from engine.records import PaymentOrder, Refund
from engine.states import OrderStatus, RefundStatus
from simulator.fake_psp import Capture, FakePsp
from simulator.oracle_refunds import check_psp_refund_keys, check_refunds_final

T0 = 1_767_225_600_000


class _Clock:
    def now_ms(self) -> int:
        return T0

    def monotonic(self) -> float:
        return 0.0


def _world(
    captured: int, refunded: int, status: RefundStatus = RefundStatus.SUCCEEDED
) -> tuple[FakePsp, dict[str, Refund], dict[str, PaymentOrder], list[Transaction]]:
    """One captured order and one refund of it, at the PSP and in our books, in agreement."""
    psp = FakePsp(_Clock())
    capture = Capture("cap_1", "ord_1", "cs_1", Money(captured, "USD"), CaptureStatus.CAPTURED)
    psp.captures["ord_1"] = capture
    psp.captures_by_id["cap_1"] = capture
    order = PaymentOrder(
        order_id="ord_1",
        payment_id="pay_1",
        seller_id="s1",
        currency="USD",
        amount_minor=captured,
        status=OrderStatus.SUCCESS,
        created_at_ms=T0,
        updated_at_ms=T0,
        ledger_booked=True,
        wallet_booked=True,
        psp_capture_id="cap_1",
    )
    refund = Refund("re_1", "ord_1", "USD", refunded, status, T0, T0, creation_key="k1")
    psp.refund_book.book(
        "re_1", "cap_1", refund.amount, declined=False, pending=status is RefundStatus.SUBMITTED
    )
    entries, _, _ = capture_entries("s1", Money(captured, "USD"), 1000)
    txns = [
        Transaction("txn_1", TransactionKind.CAPTURE, "ord_1", entries, T0),
        Transaction(
            "txn_2", TransactionKind.REFUND, "re_1", refund_entries("s1", refund.amount, 1000), T0
        ),
    ]
    if status is RefundStatus.SUCCEEDED:
        txns.append(
            Transaction(
                "txn_3",
                TransactionKind.REFUND_SETTLED,
                "re_1",
                refund_settled_entries(refund.amount),
                T0,
            )
        )
    return psp, {"re_1": refund}, {"ord_1": order}, txns


def _trial(txns: list[Transaction]) -> dict[tuple[str, str], int]:
    trial: dict[tuple[str, str], int] = {}
    for txn in txns:
        for e in txn.entries:
            trial[(e.account, e.currency)] = trial.get((e.account, e.currency), 0) + e.amount_minor
    return trial


@given(st.integers(min_value=1, max_value=10**9), st.data())
def test_a_refund_in_agreement_holds_everything(captured: int, data: st.DataObject) -> None:
    refunded = data.draw(st.integers(min_value=1, max_value=captured))
    psp, refunds, orders, txns = _world(captured, refunded)
    assert check_refunds_final(psp, refunds, orders, txns, _trial(txns)) == []


def test_a_psp_refund_under_another_key_is_a_second_refund() -> None:
    psp, refunds, orders, _ = _world(1000, 300)
    psp.refund_book.book("key_other", "cap_1", Money(300, "USD"), declined=False, pending=False)
    (found,) = check_psp_refund_keys(psp, refunds, orders)
    assert found[0] == "at_most_one_psp_refund_per_refund" and "key_other" in found[2][0]


def test_more_refunded_than_captured_is_reported_in_engine_and_ledger() -> None:
    psp, refunds, orders, txns = _world(1000, 600)
    second = attrs.evolve(refunds["re_1"], refund_id="re_2", creation_key="k2")
    refunds["re_2"] = second
    txns.append(
        Transaction(
            "txn_4", TransactionKind.REFUND, "re_2", refund_entries("s1", second.amount, 1000), T0
        )
    )
    found = {f[0]: f[2] for f in check_refunds_final(psp, refunds, orders, txns, _trial(txns))}
    over = found["refunds_never_exceed_captured"]
    assert any(x.startswith("engine: order ord_1 refunds 1200") for x in over)
    assert any(x.startswith("ledger: order ord_1 refunds 1200") for x in over)


def test_a_refund_left_open_or_against_the_psp_is_reported() -> None:
    psp, refunds, orders, txns = _world(1000, 300, RefundStatus.SUBMITTED)
    found = {f[0]: f[2] for f in check_refunds_final(psp, refunds, orders, txns, _trial(txns))}
    assert found["every_refund_terminal"] == ["refund re_1 SUBMITTED (PSP: pending)"]
    psp, refunds, orders, txns = _world(1000, 300)
    refunds["re_1"] = attrs.evolve(refunds["re_1"], status=RefundStatus.FAILED)
    found = {f[0]: f[2] for f in check_refunds_final(psp, refunds, orders, txns, _trial(txns))}
    assert found["every_refund_terminal"] == ["refund re_1 FAILED but the PSP says succeeded"]


def test_one_minor_unit_off_breaks_money_conservation() -> None:
    psp, refunds, orders, txns = _world(1000, 300)
    trial = _trial(txns)
    trial[("platform_revenue", "USD")] -= 1
    found = {f[0]: f[2] for f in check_refunds_final(psp, refunds, orders, txns, trial)}
    assert found["money_conserved"] == [
        "USD: PSP captured 1000, ledger holds 701 + PSP refunded 300 minor units"
    ]
