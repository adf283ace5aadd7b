"""The fake PSP's refunds: what it books for each refund request, and how a pending one settles.

Why apart from the PSP: refunds have rules of their own (Stripe-like), and the money they hold
on a capture must add up at every step. A capture may be refunded in parts up to its amount; a
refund is refused (FAILED, with a `RefundRefusal` reason, nothing moved, no refund object) for
an unknown or declined capture, another currency, a non-positive amount, or more than is left.
An accepted refund succeeds at once, fails at once (declined), or stays PENDING until
`succeeds` / `fails`; while pending its amount is held on the capture, so two refunds in flight
can never exceed the capture together, and a failure makes it refundable again. Every accepted
refund's outcome is announced by a `refund.succeeded` / `refund.failed` webhook; a refusal
sends none.

`RefundBook` keeps the records by idempotency key. The Gateway port's `refund` and
`query_refund` stay on `FakePsp` (simulator/fake_psp.py), where every call's scripted or
planned fault is applied; they book here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

import attrs

from engine.gateway import (
    CaptureStatus,
    PspEventKind,
    PspNotification,
    PspRefundStatus,
    RefundRefusal,
    RefundResult,
)
from engine.money import Money
from engine.ports import Clock

if TYPE_CHECKING:
    from simulator.fake_psp import Capture


@attrs.define
class Refund:
    key: str
    capture_id: str
    amount: Money
    status: PspRefundStatus
    #: None when the refund was refused: no refund object exists at the PSP.
    refund_id: str | None
    reason: str | None
    #: The capture's key (our order id), when the capture exists.
    order_key: str | None
    created_at_ms: int
    #: Wall time (ms) the refund succeeded: the booking date on the settlement file.
    settled_at_ms: int | None = None

    def result(self) -> RefundResult:
        return RefundResult(self.status, self.refund_id, self.reason)


class Emit(Protocol):
    """The PSP's webhook announcer (`FakePsp._emit`)."""

    def __call__(
        self,
        kind: PspEventKind,
        reference: str,
        capture_id: str | None = None,
        reason: str | None = None,
        refund_id: str | None = None,
    ) -> PspNotification: ...


def refusal(capture: Capture | None, amount: Money) -> RefundRefusal | None:
    """Why the PSP refuses to refund `amount` of `capture`; None if it accepts."""
    if capture is None:
        return RefundRefusal.CAPTURE_NOT_FOUND
    if capture.status is not CaptureStatus.CAPTURED:
        return RefundRefusal.CAPTURE_NOT_CAPTURED
    if capture.disputed_minor > 0:
        return RefundRefusal.CAPTURE_DISPUTED
    if amount.currency != capture.amount.currency:
        return RefundRefusal.CURRENCY_MISMATCH
    if amount.minor <= 0:
        return RefundRefusal.AMOUNT_NOT_POSITIVE
    if capture.refunded_minor + amount.minor > capture.amount.minor:
        return RefundRefusal.EXCEEDS_CAPTURED
    return None


class RefundBook:
    def __init__(
        self,
        clock: Clock,
        captures_by_id: Mapping[str, Capture],
        new_id: Callable[[str], str],
        emit: Emit,
    ) -> None:
        self.clock = clock
        self._captures_by_id = captures_by_id
        self._new_id = new_id
        self._emit = emit
        #: Every refund request by idempotency key, refused ones included, in the order asked.
        self.refunds: dict[str, Refund] = {}

    def book(
        self, key: str, capture_id: str, amount: Money, *, declined: bool, pending: bool
    ) -> Refund:
        """Book a refund request under `key`: refused, failed, pending or succeeded."""
        now_ms = self.clock.now_ms()
        capture = self._captures_by_id.get(capture_id)
        refused = refusal(capture, amount)
        if capture is None or refused is not None:
            reason = None if refused is None else refused.value
            refund = Refund(
                key, capture_id, amount, PspRefundStatus.FAILED, None, reason, None, now_ms
            )
            self.refunds[key] = refund
            return refund
        capture.refunded_minor += amount.minor
        refund = Refund(
            key,
            capture_id,
            amount,
            PspRefundStatus.PENDING,
            self._new_id("re"),
            None,
            capture.key,
            now_ms,
        )
        self.refunds[key] = refund
        if declined:
            self._finish(refund, succeeded=False, reason="declined")
        elif not pending:
            self._finish(refund, succeeded=True)
        return refund

    def _finish(
        self, refund: Refund, *, succeeded: bool, reason: str | None = None
    ) -> PspNotification:
        assert refund.status is PspRefundStatus.PENDING, refund
        assert refund.refund_id is not None, refund
        if succeeded:
            refund.status = PspRefundStatus.SUCCEEDED
            refund.settled_at_ms = self.clock.now_ms()
        else:
            refund.status = PspRefundStatus.FAILED
            refund.reason = reason
            self._captures_by_id[refund.capture_id].refunded_minor -= refund.amount.minor
        return self._emit(
            PspEventKind.REFUND_SUCCEEDED if succeeded else PspEventKind.REFUND_FAILED,
            refund.key,
            capture_id=refund.capture_id,
            reason=refund.reason,
            refund_id=refund.refund_id,
        )

    # --- pending refunds settle later (the PSP's bank or the card network answers) ------------
    def succeeds(self, key: str) -> PspNotification | None:
        """A pending refund succeeds; None if it is not pending (already settled or unknown)."""
        refund = self.refunds.get(key)
        if refund is None or refund.status is not PspRefundStatus.PENDING:
            return None
        return self._finish(refund, succeeded=True)

    def fails(self, key: str, reason: str = "refund_failed") -> PspNotification | None:
        """A pending refund fails (the card was closed...): its amount is refundable again."""
        refund = self.refunds.get(key)
        if refund is None or refund.status is not PspRefundStatus.PENDING:
            return None
        return self._finish(refund, succeeded=False, reason=reason)

    def pending(self) -> list[str]:
        """The keys of the refunds still pending, in the order they were asked."""
        return [r.key for r in self.refunds.values() if r.status is PspRefundStatus.PENDING]

    def total(self) -> Counter[str]:
        """Succeeded refunds per currency (pending ones are held, not yet paid out)."""
        totals: Counter[str] = Counter()
        for refund in self.refunds.values():
            if refund.status is PspRefundStatus.SUCCEEDED:
                totals[refund.amount.currency] += refund.amount.minor
        return totals
