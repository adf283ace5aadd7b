"""The oracle at each webhook answer (simulator/world_webhooks.py): a 2xx answer to a PSP
event means the engine applied it, so what the event must have done is done when the PSP hears
2xx; and an event that could already apply when it was sent must not be bounced.
Part of the flow invariants (simulator/oracle_flows.py), apart so each module stays small."""

from __future__ import annotations

from collections.abc import Mapping

from engine.gateway import PspEventKind
from engine.records import Payment, PaymentOrder
from engine.states import OrderStatus, PaymentStatus, is_terminal

SESSION_EVENTS = frozenset(
    {
        PspEventKind.SESSION_AUTHORIZED,
        PspEventKind.SESSION_DECLINED,
        PspEventKind.SESSION_EXPIRED,
    }
)
CAPTURE_OUTCOMES = frozenset({PspEventKind.CAPTURE_SUCCEEDED})
CAPTURE_EVENTS = frozenset({PspEventKind.CAPTURE_SUCCEEDED, PspEventKind.CAPTURE_FAILED})


def check_webhook_answer(
    kind: PspEventKind,
    reference: str,
    payments: Mapping[str, Payment],
    orders: Mapping[str, PaymentOrder],
) -> str | None:
    """What a 2xx answer to this event left undone, or None.

    A declined capture's notice may rightly leave its order EXECUTING (a failed attempt is not
    the key's final word), so only a capture success must have made its order final.
    """
    if kind in SESSION_EVENTS:
        payment = payments.get(reference)
        if payment is not None and payment.status in (
            PaymentStatus.CREATED,
            PaymentStatus.AWAITING_PAYMENT,
        ):
            return f"{kind} for payment {reference} answered 2xx, payment still {payment.status}"
    elif kind in CAPTURE_OUTCOMES:
        order = orders.get(reference)
        if order is not None and not is_terminal(order.status):
            return f"{kind} for order {reference} answered 2xx, order still {order.status}"
    return None


def status_before_event(
    kind: PspEventKind,
    reference: str,
    payments: Mapping[str, Payment],
    orders: Mapping[str, PaymentOrder],
) -> str | None:
    """The status of the event's aggregate when the event can already apply, else None.

    Read before the engine handles the event: statuses only move forward, so an event that
    could apply then can apply when the engine answers, and must not be bounced.
    """
    if kind in SESSION_EVENTS:
        payment = payments.get(reference)
        if payment is not None and payment.status is not PaymentStatus.CREATED:
            return str(payment.status)
    elif kind in CAPTURE_EVENTS:
        order = orders.get(reference)
        if order is not None and order.status is not OrderStatus.NOT_STARTED:
            return str(order.status)
    return None
