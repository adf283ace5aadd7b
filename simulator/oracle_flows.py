"""The oracle's flow invariants: what a payment's life must look like from outside the engine.

`simulator/oracle.py` proves the money adds up (balanced, wallet = ledger, the PSP's captures
= the ledger). These checks prove the *story* is right, each recomputed from the PSP's books,
the committed rows and what clients and merchants were told, never from the engine's own
helpers (the commission is recomputed here with its own arithmetic, not `split_bps`):

At every commit (`check_commit`, with the unit of work that just committed):

- `commission_recomputed`: every capture transaction debits psp_clearing by the order's amount
  and credits the platform `round_half_even(amount * commission_bps / 10000)` and the order's
  seller the rest.
- `state_changes_announced`: every status change of a payment, every order reaching SUCCESS
  or FAILED on its own (`ANNOUNCED_ORDER`), and every refund created, SUCCEEDED or FAILED
  (`ANNOUNCED_REFUND`), writes exactly one announcement in the same unit of work
  (`payment.<status>`, `order.succeeded`, `order.failed`, `refund.<status>`, keyed by the id),
  and every
  announcement in a unit is such a change. Orders that end together with their payment (its
  checkout closed, or risk refused it) are announced by the payment's message, which names
  every order to each seller. Alerts (`ALERT_TOPICS`) are not state changes; the two of
  pay-in are written exactly when a recorded PSP event contradicts a final state (money
  authorized for a closed checkout; a capture outcome against its final order).
- `payment_status_agrees_with_orders`: a COMPLETED payment has no failure reason and a failed
  one has one (and so does every FAILED order, and no other); a COMPLETED payment's orders are
  all final, its captured ones booked, at least one captured; a FAILED, EXPIRED or REJECTED
  payment has no captured order and no order still open; a payment awaiting its buyer has no
  started order; an AUTHORIZED one has no unstarted order.

After quiescence (`check_flows_final`):

- `authorized_sessions_honoured`: a checkout whose session the PSP authorized ends COMPLETED,
  or FAILED because every order failed on its own; never EXPIRED, and no order of it failed
  together with the payment (nothing voids an authorization yet). A declined session's
  checkout ends FAILED, an expired one's EXPIRED.
- `orders_fail_only_on_psp_word`: an order that failed on its own (not with its payment) did
  so because the PSP declined its capture key. Silence (timeouts, an outage) is never a
  failure.
- `charged_buyers_completed`: a buyer with any capture at the PSP ends with a COMPLETED payment
  (refunds will add "or refunded"): never charged and told FAILED or EXPIRED.
- `retries_spent_before_giving_up`: a checkout FAILED because the PSP never answered its
  registration had `register_attempts_max` registration calls at the PSP first.
- `merchants_notified`: the merchants' notifier received every captured order's
  `order.succeeded`, every PSP-declined order's `order.failed`, and every final payment's
  `payment.<status>`.

And at each webhook answer (`check_webhook_answer`, called by the world's endpoint):

- `webhook_effect_committed`: a PSP event answered 2xx has its effect committed at that moment:
  its event id is recorded (so a redelivery is recognised), a session outcome has moved its
  payment off AWAITING_PAYMENT, a capture outcome has made its order final. Otherwise a
  crash between recording and applying loses the effect for good: the PSP, answered 2xx,
  never sends it again.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

import attrs

from engine.gateway import CaptureStatus, PspEventKind, SessionStatus
from engine.ledger import MERCHANT_PAYABLE, PLATFORM_REVENUE, PSP_CLEARING, Transaction
from engine.records import OutboxMessage, Payment, PaymentOrder, PspEvent, Refund
from engine.states import OrderStatus, PaymentStatus, RefundStatus, is_terminal
from simulator.fake_psp import FakePsp

FLOW_INVARIANTS = (
    "commission_recomputed",
    "retries_spent_before_giving_up",
    "state_changes_announced",
    "payment_status_agrees_with_orders",
    "authorized_sessions_honoured",
    "orders_fail_only_on_psp_word",
    "charged_buyers_completed",
    "merchants_notified",
    "webhook_effect_committed",
)

#: The order statuses announced by a message of their own, and its topic.
ANNOUNCED_ORDER: Mapping[OrderStatus, str] = {
    OrderStatus.SUCCESS: "order.succeeded",
    OrderStatus.FAILED: "order.failed",
}
#: The refund statuses announced by a message of their own (REQUESTED: its creation), and its
#: topic. SUBMITTED (the PSP holds it) is not announced.
ANNOUNCED_REFUND: Mapping[RefundStatus, str] = {
    RefundStatus.REQUESTED: "refund.requested",
    RefundStatus.SUCCEEDED: "refund.succeeded",
    RefundStatus.FAILED: "refund.failed",
}
#: Messages that raise a flag without a state change.
ALERT_TOPICS = frozenset(
    {
        "payment.authorized_after_close",
        "order.conflicting_psp_event",
        "refund.conflicting_psp_event",
    }
)
#: Why an order fails with its payment, never on its own (no message of its own).
FAILED_WITH_PAYMENT_PREFIXES = ("checkout_", "rejected_by_risk")

BPS_DENOMINATOR = 10_000


def payment_topic(status: PaymentStatus) -> str:
    return f"payment.{status.value.lower()}"


def expected_commission(amount_minor: int, rate_bps: int) -> int:
    """`amount * rate / 10000` rounded half to even, in whole minor units (own arithmetic)."""
    quotient, remainder = divmod(amount_minor * rate_bps, BPS_DENOMINATOR)
    if 2 * remainder > BPS_DENOMINATOR or (2 * remainder == BPS_DENOMINATOR and quotient % 2):
        quotient += 1
    return quotient


@attrs.frozen
class Change:
    """One row a committed unit of work wrote: its status before (None: inserted) and after."""

    before: PaymentStatus | OrderStatus | RefundStatus | None
    after: Payment | PaymentOrder | Refund


@attrs.frozen
class CommitView:
    """What one committed unit of work did, as the commit-time checks need it."""

    payments: Sequence[Change]
    orders: Sequence[Change]
    outbox: Sequence[OutboxMessage]
    txns: Sequence[Transaction]
    #: The PSP events the unit recorded, and the committed payments and orders after it.
    events: Sequence[PspEvent] = ()
    committed_payments: Mapping[str, Payment] = attrs.Factory(dict)
    committed_orders: Mapping[str, PaymentOrder] = attrs.Factory(dict)
    refunds: Sequence[Change] = ()


def _failed_with_payment(order: PaymentOrder) -> bool:
    reason = order.failure_reason or ""
    return order.status is OrderStatus.FAILED and reason.startswith(FAILED_WITH_PAYMENT_PREFIXES)


# --- at every commit ------------------------------------------------------------------------------
def check_commission(
    txns: Iterable[Transaction], orders: Mapping[str, PaymentOrder], rate_bps: int
) -> list[str]:
    bad: list[str] = []
    for txn in txns:
        if txn.kind.value != "capture":
            continue
        order_id = txn.description.rpartition(" ")[2]
        order = orders.get(order_id)
        debit = sum(
            e.amount_minor for e in txn.entries if e.account == PSP_CLEARING and e.amount_minor > 0
        )
        revenue = -sum(e.amount_minor for e in txn.entries if e.account == PLATFORM_REVENUE)
        seller_credits = {
            e.account.partition(":")[2]: -e.amount_minor
            for e in txn.entries
            if e.account.startswith(MERCHANT_PAYABLE + ":")
        }
        if order is None:
            bad.append(f"capture {txn.txn_id} names no known order ({txn.description!r})")
            continue
        commission = expected_commission(order.amount_minor, rate_bps)
        net = order.amount_minor - commission
        expected_sellers = {order.seller_id: net} if net else {}
        if (
            debit != order.amount_minor
            or revenue != commission
            or seller_credits != expected_sellers
        ):
            bad.append(
                f"order {order_id} {order.amount_minor} {order.currency} at {rate_bps} bps: "
                f"booked captured {debit} / commission {revenue} / sellers {seller_credits}, "
                f"expected {order.amount_minor} / {commission} / {expected_sellers}"
            )
    return bad


def check_announcements(view: CommitView) -> list[str]:
    expected: list[tuple[str, str]] = []
    for change in view.payments:
        payment = change.after
        assert isinstance(payment, Payment)
        if change.before is not payment.status:
            expected.append((payment_topic(payment.status), payment.payment_id))
    for change in view.orders:
        order = change.after
        assert isinstance(order, PaymentOrder)
        topic = ANNOUNCED_ORDER.get(order.status)
        if change.before is not order.status and topic and not _failed_with_payment(order):
            expected.append((topic, order.order_id))
    for change in view.refunds:
        refund = change.after
        assert isinstance(refund, Refund)
        refund_topic = ANNOUNCED_REFUND.get(refund.status)
        if change.before is not refund.status and refund_topic:
            expected.append((refund_topic, refund.refund_id))
    expected += _alerts_due(view)
    written = [
        (m.topic, m.key)
        for m in view.outbox
        if (m.topic not in ALERT_TOPICS or m.topic in CHECKED_ALERTS)
        and not m.topic.startswith("dispute.")  # simulator/oracle_disputes.py checks those
        and not m.topic.startswith("payout.")  # simulator/oracle_payouts.py checks those
    ]
    bad: list[str] = []
    for topic, key in sorted(set(expected) | set(written)):
        want, got = expected.count((topic, key)), written.count((topic, key))
        if want != got:
            bad.append(f"{topic} {key}: {got} message(s) for {want} state change(s)")
    return bad


#: Alerts written exactly when a recorded PSP event contradicts a final state.
CHECKED_ALERTS = frozenset({"payment.authorized_after_close", "order.conflicting_psp_event"})
_CONTRADICTS = {
    "capture.succeeded": OrderStatus.FAILED,
    "capture.failed": OrderStatus.SUCCESS,
}


def _alerts_due(view: CommitView) -> list[tuple[str, str]]:
    """The alerts the unit's recorded PSP events call for: money authorized for a checkout
    already closed; a capture outcome contradicting its final order. A row the unit itself
    changed was not final before it, so only rows the unit left alone can be contradicted."""
    changed = {c.after.payment_id for c in view.payments if isinstance(c.after, Payment)}
    changed |= {c.after.order_id for c in view.orders if isinstance(c.after, PaymentOrder)}
    due: list[tuple[str, str]] = []
    for event in view.events:
        reference = str(event.payload.get("reference", ""))
        if reference in changed:
            continue
        if event.kind == PspEventKind.SESSION_AUTHORIZED.value:
            payment = view.committed_payments.get(reference)
            if payment is not None and is_terminal(payment.status):
                due.append(("payment.authorized_after_close", reference))
        elif event.kind in _CONTRADICTS:
            order = view.committed_orders.get(reference)
            if order is not None and order.status is _CONTRADICTS[event.kind]:
                due.append(("order.conflicting_psp_event", reference))
    return due


_FAILED_PAYMENTS = (PaymentStatus.FAILED, PaymentStatus.EXPIRED, PaymentStatus.REJECTED_BY_RISK)
#: What a final PSP session says its checkout ended as (an authorized one: see below).
_SESSION_ENDS = {
    SessionStatus.DECLINED: PaymentStatus.FAILED,
    SessionStatus.EXPIRED: PaymentStatus.EXPIRED,
}


def check_payment_orders(payment: Payment, orders: Collection[PaymentOrder]) -> str | None:
    """What is wrong between a payment's status and its committed orders, or None."""
    status = payment.status
    captured = [o for o in orders if o.status is OrderStatus.SUCCESS]
    started = [o for o in orders if o.status is not OrderStatus.NOT_STARTED]
    problem = ""
    if status is PaymentStatus.COMPLETED and payment.failure_reason is not None:
        problem = f"COMPLETED with a failure reason ({payment.failure_reason})"
    elif status in _FAILED_PAYMENTS and not payment.failure_reason:
        problem = f"{status} without a failure reason"
    elif any((o.status is OrderStatus.FAILED) != bool(o.failure_reason) for o in orders):
        problem = "an order's failure reason does not match its status"
    elif status is PaymentStatus.COMPLETED:
        if not captured:
            problem = "COMPLETED with no captured order"
        elif any(not is_terminal(o.status) for o in orders):
            problem = "COMPLETED with an order still open"
        elif any(not o.booked for o in captured):
            problem = "COMPLETED with a captured order not booked"
    elif status in (PaymentStatus.FAILED, PaymentStatus.EXPIRED, PaymentStatus.REJECTED_BY_RISK):
        if captured:
            problem = f"{status} with {len(captured)} captured order(s)"
        elif any(not is_terminal(o.status) for o in orders):
            problem = f"{status} with an order still open"
    elif status in (PaymentStatus.CREATED, PaymentStatus.AWAITING_PAYMENT):
        if started:
            problem = f"{status} with {len(started)} started order(s)"
    elif status is PaymentStatus.AUTHORIZED and len(started) < len(orders):
        problem = "AUTHORIZED with an unstarted order"
    if not problem:
        return None
    shown = ", ".join(f"{o.order_id} {o.status}" for o in sorted(orders, key=_order_key))
    return f"payment {payment.payment_id} {problem} ({shown})"


def _order_key(order: PaymentOrder) -> str:
    return order.order_id


# --- after quiescence ---------------------------------------------------------------------------
def check_flows_final(
    payments: Mapping[str, Payment],
    orders: Mapping[str, PaymentOrder],
    psp: FakePsp,
    notified: Collection[tuple[str, str]] | None,
    *,
    register_attempts_max: int | None = None,
) -> list[tuple[str, str, list[str]]]:
    """(invariant, detail, offending objects) for every final flow invariant that broke.

    `notified` None: the world did not record notifications (merchants_notified not checked).
    """
    by_payment: dict[str, list[PaymentOrder]] = {}
    for order in orders.values():
        by_payment.setdefault(order.payment_id, []).append(order)
    captures = psp.captures
    found: list[tuple[str, str, list[str]]] = []

    abandoned: list[str] = []
    charged: list[str] = []
    for session in psp.sessions.values():
        payment = payments.get(session.nonce)
        if payment is None:
            continue
        mine = by_payment.get(payment.payment_id, [])
        ends_as = _SESSION_ENDS.get(session.status)
        if ends_as is not None and payment.status is not ends_as:
            abandoned.append(
                f"payment {payment.payment_id} {payment.status} but session "
                f"{session.session_id} is {session.status}"
            )
        if session.status is SessionStatus.AUTHORIZED:
            # FAILED is right only when every order failed on its own (whether the PSP said so
            # is `orders_fail_only_on_psp_word`'s question), never with its payment.
            each_on_its_own = bool(mine) and all(
                o.status is OrderStatus.FAILED and not _failed_with_payment(o) for o in mine
            )
            ok = payment.status is PaymentStatus.COMPLETED or (
                payment.status is PaymentStatus.FAILED and each_on_its_own
            )
            if not ok:
                abandoned.append(
                    f"payment {payment.payment_id} {payment.status} "
                    f"({payment.failure_reason}) but session {session.session_id} is authorized"
                )
        taken = [
            o.order_id
            for o in mine
            if (c := captures.get(o.order_id)) is not None and c.status is CaptureStatus.CAPTURED
        ]
        if taken and payment.status is not PaymentStatus.COMPLETED:
            charged.append(
                f"payment {payment.payment_id} {payment.status}: the buyer was charged for "
                f"{len(taken)} order(s) ({', '.join(taken)})"
            )
    wrong = [
        problem
        for payment_id in sorted(payments)
        if (problem := check_payment_orders(payments[payment_id], by_payment.get(payment_id, [])))
    ]
    if wrong:  # checked at every commit on memory; here for the postgres tier's final state
        found.append(
            (
                "payment_status_agrees_with_orders",
                "a payment's status contradicts its orders",
                wrong,
            )
        )
    if abandoned:
        found.append(
            (
                "authorized_sessions_honoured",
                "a checkout the PSP authorized was abandoned",
                sorted(abandoned),
            )
        )

    silent: list[str] = []
    for order in orders.values():
        if order.status is not OrderStatus.FAILED or _failed_with_payment(order):
            continue  # an order that failed with its payment: authorized_sessions_honoured
        capture = captures.get(order.order_id)
        if capture is not None and capture.status is CaptureStatus.DECLINED:
            continue
        payment = payments.get(order.payment_id)
        silent.append(
            f"order {order.order_id} FAILED ({order.failure_reason}) after "
            f"{psp.capture_calls[order.order_id]} capture call(s); the PSP "
            + ("has no capture for it" if capture is None else f"says {capture.status}")
            + ("" if payment is None else f"; payment {payment.status}")
        )
    if silent:
        found.append(
            (
                "orders_fail_only_on_psp_word",
                "an order failed without the PSP declining it",
                sorted(silent),
            )
        )

    if charged:
        found.append(
            ("charged_buyers_completed", "a charged buyer's payment did not complete", charged)
        )

    if register_attempts_max is not None:
        early = [
            f"payment {p.payment_id} after {psp.register_calls[p.payment_id]} registration call(s)"
            for p in payments.values()
            if p.status is PaymentStatus.FAILED
            and (p.failure_reason or "").startswith("psp_registration_failed")
            and psp.register_calls[p.payment_id] < register_attempts_max
        ]
        if early:
            found.append(
                (
                    "retries_spent_before_giving_up",
                    f"a checkout failed on registration before {register_attempts_max} tries",
                    sorted(early),
                )
            )

    if notified is None:
        return found
    missing: list[str] = []
    for order in orders.values():
        topic = ANNOUNCED_ORDER.get(order.status)
        if topic and not _failed_with_payment(order) and (topic, order.order_id) not in notified:
            missing.append(f"{topic} {order.order_id}")
    for payment in payments.values():
        topic = payment_topic(payment.status)
        if is_terminal(payment.status) and (topic, payment.payment_id) not in notified:
            missing.append(f"{topic} {payment.payment_id}")
    if missing:
        found.append(
            (
                "merchants_notified",
                f"{len(missing)} final state(s) never reached the merchants' notifier",
                sorted(missing),
            )
        )
    return found
