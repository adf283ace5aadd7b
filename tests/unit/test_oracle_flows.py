"""The flow invariants as functions: each rule on small hand-made states, and its arithmetic
against the engine's (they must agree, though neither calls the other)."""

from __future__ import annotations

import attrs
from hypothesis import given
from hypothesis import strategies as st

from engine.gateway import CaptureStatus, PspEventKind, SessionStatus
from engine.ledger import Transaction, TransactionKind, capture_entries
from engine.money import Money, split_bps
from engine.records import OutboxMessage, Payment, PaymentOrder, PspEvent
from engine.states import OrderStatus, PaymentStatus
from simulator.fake_psp import Capture, FakePsp, Session
from simulator.oracle_flows import (
    Change,
    CommitView,
    check_announcements,
    check_commission,
    check_flows_final,
    check_payment_orders,
    expected_commission,
)
from simulator.oracle_webhooks import check_webhook_answer

T0 = 1_767_225_600_000


class _Clock:
    def now_ms(self) -> int:
        return T0

    def monotonic(self) -> float:
        return 0.0


def _payment(status: PaymentStatus, pid: str = "pay_1", reason: str | None = None) -> Payment:
    return Payment(
        payment_id=pid,
        checkout_id=f"chk_{pid}",
        buyer_id="buyer",
        currency="USD",
        amount_minor=3000,
        status=status,
        created_at_ms=T0,
        updated_at_ms=T0,
        expires_at_ms=T0 + 1,
        failure_reason=reason,
    )


def _order(
    oid: str, status: OrderStatus, *, booked: bool = False, reason: str | None = None
) -> PaymentOrder:
    return PaymentOrder(
        order_id=oid,
        payment_id="pay_1",
        seller_id="seller-1",
        currency="USD",
        amount_minor=1000,
        status=status,
        created_at_ms=T0,
        updated_at_ms=T0,
        ledger_booked=booked,
        wallet_booked=booked,
        failure_reason=reason,
    )


def _capture_txn(order: PaymentOrder, bps: int) -> Transaction:
    entries, _, _ = capture_entries(order.seller_id, order.amount, bps)
    return Transaction(
        txn_id="txn_1",
        kind=TransactionKind.CAPTURE,
        reference=order.order_id,
        entries=entries,
        created_at_ms=T0,
        description=f"capture of order {order.order_id}",
    )


@given(amount=st.integers(0, 10**12), bps=st.integers(0, 10_000))
def test_the_oracles_commission_agrees_with_the_engines(amount: int, bps: int) -> None:
    commission, _ = split_bps(Money(amount, "USD"), bps)
    assert expected_commission(amount, bps) == commission.minor


def test_a_capture_booked_at_the_rate_passes_and_any_other_split_is_reported() -> None:
    order = _order("ord_1", OrderStatus.SUCCESS, booked=True)
    good = _capture_txn(order, 1000)
    assert check_commission([good], {"ord_1": order}, 1000) == []
    assert check_commission([good], {"ord_1": order}, 1500)  # booked at another rate
    bad = attrs.evolve(order, amount_minor=1005)  # the ledger saw another amount
    assert check_commission([good], {"ord_1": bad}, 1000)


def _message(topic: str, key: str) -> OutboxMessage:
    return OutboxMessage(f"msg_{topic}_{key}", topic, key, {}, T0)


def test_each_state_change_has_exactly_one_message_in_its_unit() -> None:
    authorized = _payment(PaymentStatus.AUTHORIZED)
    change = Change(PaymentStatus.AWAITING_PAYMENT, authorized)
    ok = CommitView([change], [], [_message("payment.authorized", "pay_1")], [])
    assert check_announcements(ok) == []
    missing = CommitView([change], [], [], [])
    assert check_announcements(missing) == [
        "payment.authorized pay_1: 0 message(s) for 1 state change(s)"
    ]
    twice = CommitView([change], [], [_message("payment.authorized", "pay_1")] * 2, [])
    assert check_announcements(twice)
    no_change = CommitView([], [], [_message("order.succeeded", "ord_1")], [])
    assert check_announcements(no_change) == [
        "order.succeeded ord_1: 1 message(s) for 0 state change(s)"
    ]
    # An alert is written exactly when a recorded PSP event contradicts a final state.
    alert = CommitView([], [], [_message("order.conflicting_psp_event", "ord_1")], [])
    assert check_announcements(alert) == [
        "order.conflicting_psp_event ord_1: 1 message(s) for 0 state change(s)"
    ]
    late = PspEvent("evt_1", "capture.succeeded", {"reference": "ord_1"}, T0)
    failed = {"ord_1": _order("ord_1", OrderStatus.FAILED, reason="declined")}
    due = CommitView([], [], [], [], events=[late], committed_orders=failed)
    assert check_announcements(due) == [
        "order.conflicting_psp_event ord_1: 0 message(s) for 1 state change(s)"
    ]
    answered = attrs.evolve(due, outbox=[_message("order.conflicting_psp_event", "ord_1")])
    assert check_announcements(answered) == []


def test_orders_that_end_with_their_payment_are_announced_by_the_payments_message() -> None:
    closed = Change(OrderStatus.NOT_STARTED, _order("o", OrderStatus.FAILED, reason="checkout_x"))
    view = CommitView(
        [Change(PaymentStatus.AWAITING_PAYMENT, _payment(PaymentStatus.EXPIRED))],
        [closed],
        [_message("payment.expired", "pay_1")],
        [],
    )
    assert check_announcements(view) == []
    started = Change(OrderStatus.NOT_STARTED, _order("o", OrderStatus.EXECUTING))
    assert check_announcements(CommitView([], [started], [], [])) == []  # internal: no message


def test_a_payments_status_must_agree_with_its_orders() -> None:
    done = _order("a", OrderStatus.SUCCESS, booked=True)
    open_ = _order("b", OrderStatus.EXECUTING)
    failed = _order("c", OrderStatus.FAILED, reason="declined")
    completed = _payment(PaymentStatus.COMPLETED)
    assert "reason" in (
        check_payment_orders(completed, [done, attrs.evolve(failed, failure_reason=None)]) or ""
    )
    assert "reason" in (check_payment_orders(_payment(PaymentStatus.FAILED), [failed]) or "")
    assert check_payment_orders(completed, [done, failed]) is None
    assert "still open" in (check_payment_orders(completed, [done, open_]) or "")
    assert "not booked" in (
        check_payment_orders(completed, [attrs.evolve(done, ledger_booked=False)]) or ""
    )
    assert "no captured" in (check_payment_orders(completed, [failed]) or "")
    failed_payment = _payment(PaymentStatus.FAILED, reason="every_order_failed")
    assert check_payment_orders(failed_payment, [failed]) is None
    assert "captured" in (check_payment_orders(failed_payment, [done, failed]) or "")
    awaiting = _payment(PaymentStatus.AWAITING_PAYMENT)
    assert "started" in (check_payment_orders(awaiting, [open_]) or "")
    authorized = _payment(PaymentStatus.AUTHORIZED)
    assert "unstarted" in (
        check_payment_orders(authorized, [_order("d", OrderStatus.NOT_STARTED)]) or ""
    )


def _psp_with(
    session_status: SessionStatus, captures: dict[str, CaptureStatus], calls: int = 1
) -> FakePsp:
    psp = FakePsp(_Clock())
    psp.sessions["cs_1"] = Session("cs_1", "pay_1", Money(3000, "USD"), session_status, None)
    psp.by_nonce["pay_1"] = "cs_1"
    for key, status in captures.items():
        psp.captures[key] = Capture(f"cap_{key}", key, "cs_1", Money(1000, "USD"), status)
        psp.capture_calls[key] = calls
    return psp


def _invariants(found: list[tuple[str, str, list[str]]]) -> set[str]:
    return {name for name, _, _ in found}


def test_a_charged_buyer_whose_payment_did_not_complete_is_reported() -> None:
    """The planted bug partial_capture_marks_failed, as its final state: the orders agree with
    the PSP (so the older invariants hold), the payment says FAILED: only the flow checks see it,
    from three sides (the buyer's, the PSP session's, the payment's own orders)."""
    orders = {
        "a": _order("a", OrderStatus.SUCCESS, booked=True),
        "b": _order("b", OrderStatus.FAILED, reason="declined"),
    }
    payments = {"pay_1": _payment(PaymentStatus.FAILED, reason="every_order_failed")}
    psp = _psp_with(
        SessionStatus.AUTHORIZED, {"a": CaptureStatus.CAPTURED, "b": CaptureStatus.DECLINED}
    )
    notified = {("order.succeeded", "a"), ("order.failed", "b"), ("payment.failed", "pay_1")}
    found = check_flows_final(payments, orders, psp, notified)
    assert _invariants(found) == {
        "charged_buyers_completed",
        "authorized_sessions_honoured",
        "payment_status_agrees_with_orders",
    }
    payments = {"pay_1": _payment(PaymentStatus.COMPLETED)}
    notified.add(("payment.completed", "pay_1"))
    assert check_flows_final(payments, orders, psp, notified) == []


def test_an_order_fails_only_on_the_psps_word() -> None:
    orders = {"a": _order("a", OrderStatus.FAILED, reason="TooSlowError()")}
    payments = {"pay_1": _payment(PaymentStatus.FAILED, reason="every_order_failed")}
    silent = _psp_with(SessionStatus.AUTHORIZED, {})
    silent.capture_calls["a"] = 12
    found = check_flows_final(payments, orders, silent, None)
    assert _invariants(found) == {"orders_fail_only_on_psp_word"}
    declined = _psp_with(SessionStatus.AUTHORIZED, {"a": CaptureStatus.DECLINED})
    assert check_flows_final(payments, orders, declined, None) == []


def test_an_authorized_session_never_ends_expired() -> None:
    orders = {"a": _order("a", OrderStatus.FAILED, reason="checkout_expired")}
    payments = {"pay_1": _payment(PaymentStatus.EXPIRED, reason="session_authorized")}
    found = check_flows_final(payments, orders, _psp_with(SessionStatus.AUTHORIZED, {}), None)
    assert _invariants(found) == {"authorized_sessions_honoured"}
    expired = _psp_with(SessionStatus.EXPIRED, {})
    assert check_flows_final(payments, orders, expired, None) == []


def test_every_final_state_must_reach_the_merchants_notifier() -> None:
    orders = {"a": _order("a", OrderStatus.SUCCESS, booked=True)}
    payments = {"pay_1": _payment(PaymentStatus.COMPLETED)}
    psp = _psp_with(SessionStatus.AUTHORIZED, {"a": CaptureStatus.CAPTURED})
    found = check_flows_final(payments, orders, psp, {("payment.completed", "pay_1")})
    assert found == [
        (
            "merchants_notified",
            "1 final state(s) never reached the merchants' notifier",
            ["order.succeeded a"],
        )
    ]


def test_a_webhook_answered_2xx_has_its_effect_committed() -> None:
    awaiting = {"pay_1": _payment(PaymentStatus.AWAITING_PAYMENT)}
    authorized = {"pay_1": _payment(PaymentStatus.AUTHORIZED)}
    kind = PspEventKind.SESSION_AUTHORIZED
    assert check_webhook_answer(kind, "pay_1", awaiting, {}) is not None
    assert check_webhook_answer(kind, "pay_1", authorized, {}) is None
    executing = {"a": _order("a", OrderStatus.EXECUTING)}
    assert check_webhook_answer(PspEventKind.CAPTURE_SUCCEEDED, "a", {}, executing)
    # A failed attempt's notice rightly leaves the order to ask the PSP again.
    assert check_webhook_answer(PspEventKind.CAPTURE_FAILED, "a", {}, executing) is None
