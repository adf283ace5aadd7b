"""The fake PSP's disputes (chargebacks): opened on captured payments, later won or lost.

Why apart from the PSP: like refunds (simulator/psp_refunds.py), disputes have rules of their
own and money that must add up. Stripe's lifecycle, simplified to what moves money:

- `open`: the cardholder's bank disputes a capture. The PSP takes what is left of it (the
  capture less what is refunded or held by a pending refund) back at once, and announces
  `charge.dispute.created` then `charge.dispute.funds_withdrawn`. A capture is disputed at most
  once, and a disputed capture can no longer be refunded (Stripe's `charge_disputed`).
- `close(won=...)`: the card network decides. `charge.dispute.closed` carries status `won` or
  `lost`; a won dispute also announces `charge.dispute.funds_reinstated` (the money is back).

Every event is kept per dispute, so the PSP can deliver them again (`events_of`): a real PSP
retries a webhook for days, and the simulated world redelivers what its faults lost once they
stop. `query` answers `GET /v1/disputes/{id}`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import attrs

from engine.gateway import (
    CaptureStatus,
    DisputeResult,
    PspDisputeStatus,
    PspEventKind,
    PspNotification,
)
from engine.money import Money
from engine.ports import Clock

if TYPE_CHECKING:
    from simulator.fake_psp import Capture

#: Why cardholders dispute (Stripe's reasons), drawn in turn.
DISPUTE_REASONS = ("fraudulent", "product_not_received", "duplicate", "general")


@attrs.define
class PspDispute:
    dispute_id: str
    capture_id: str
    #: The disputed capture's idempotency key: our order id (the events' reference).
    order_key: str
    amount: Money
    status: PspDisputeStatus
    reason: str
    created_at_ms: int
    closed_at_ms: int | None = None
    #: Every event announced for it, in order (what a redelivery sends again).
    events: list[PspNotification] = attrs.Factory(list)

    @property
    def open(self) -> bool:
        return self.status not in (PspDisputeStatus.WON, PspDisputeStatus.LOST)

    def result(self) -> DisputeResult:
        return DisputeResult(
            self.status,
            self.dispute_id,
            self.capture_id,
            self.amount.minor,
            self.amount.currency,
            self.reason,
        )


class DisputeBook:
    def __init__(
        self,
        clock: Clock,
        captures_by_id: Mapping[str, Capture],
        new_id: Callable[[str], str],
        announce: Callable[[PspNotification], None],
    ) -> None:
        """`announce` sends an event as the PSP's webhook (`FakePsp._announce`)."""
        self.clock = clock
        self._captures_by_id = captures_by_id
        self._new_id = new_id
        self._announce = announce
        #: Every dispute by its id, in the order opened.
        self.disputes: dict[str, PspDispute] = {}
        #: capture id -> its dispute's id.
        self.by_capture: dict[str, str] = {}

    def open(self, capture_id: str) -> PspDispute | None:
        """Dispute what is left of a capture; None when it cannot be (not captured, already
        disputed, nothing left after refunds)."""
        capture = self._captures_by_id.get(capture_id)
        if capture is None or capture.status is not CaptureStatus.CAPTURED:
            return None
        if capture_id in self.by_capture:
            return None
        left = capture.amount.minor - capture.refunded_minor
        if left <= 0:
            return None
        reason = DISPUTE_REASONS[len(self.disputes) % len(DISPUTE_REASONS)]
        dispute = PspDispute(
            self._new_id("dp"),
            capture_id,
            capture.key,
            Money(left, capture.amount.currency),
            PspDisputeStatus.NEEDS_RESPONSE,
            reason,
            self.clock.now_ms(),
        )
        self.disputes[dispute.dispute_id] = dispute
        self.by_capture[capture_id] = dispute.dispute_id
        capture.disputed_minor = left
        dispute.events.append(self._emit(PspEventKind.DISPUTE_CREATED, dispute))
        dispute.events.append(self._emit(PspEventKind.DISPUTE_FUNDS_WITHDRAWN, dispute))
        return dispute

    def close(self, dispute_id: str, *, won: bool) -> bool:
        """The card network decides an open dispute; False if it is not open."""
        dispute = self.disputes.get(dispute_id)
        if dispute is None or not dispute.open:
            return False
        dispute.status = PspDisputeStatus.WON if won else PspDisputeStatus.LOST
        dispute.closed_at_ms = self.clock.now_ms()
        dispute.events.append(self._emit(PspEventKind.DISPUTE_CLOSED, dispute))
        if won:
            dispute.events.append(self._emit(PspEventKind.DISPUTE_FUNDS_REINSTATED, dispute))
        return True

    def _emit(self, kind: PspEventKind, dispute: PspDispute) -> PspNotification:
        """The event, as it is now: its reference is the capture's key, our order id."""
        event = PspNotification(
            event_id=self._new_id("evt"),
            kind=kind,
            reference=dispute.order_key,
            occurred_at_ms=self.clock.now_ms(),
            capture_id=dispute.capture_id,
            reason=dispute.reason,
            raw={"type": kind.value, "reference": dispute.order_key},
            dispute_id=dispute.dispute_id,
            amount_minor=dispute.amount.minor,
            currency=dispute.amount.currency,
            dispute_status=dispute.status.value,
        )
        self._announce(event)
        return event

    def query(self, dispute_id: str) -> DisputeResult:
        dispute = self.disputes.get(dispute_id)
        if dispute is None:
            return DisputeResult(PspDisputeStatus.NOT_FOUND, dispute_id)
        return dispute.result()

    def open_ids(self) -> list[str]:
        return [d.dispute_id for d in self.disputes.values() if d.open]

    def withdrawn_total(self) -> Counter[str]:
        """What disputes keep withdrawn per currency: open and lost ones (a won dispute's
        funds were reinstated)."""
        totals: Counter[str] = Counter()
        for dispute in self.disputes.values():
            if dispute.status is not PspDisputeStatus.WON:
                totals[dispute.amount.currency] += dispute.amount.minor
        return totals
