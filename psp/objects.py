"""The fake PSP's state as Stripe objects: Checkout Sessions, PaymentIntents, Charges, Refunds.

Why apart from `FakePsp` (simulator/fake_psp.py): the FakePsp is the simulator's PSP, whose
Python API the oracle and the settlement files read; Stripe's objects carry more (metadata,
URLs, a PaymentIntent per session) that only the HTTP face needs. `StripeBooks` keeps that extra
per object and renders each FakePsp record in Stripe's shape.

The mapping (documented in docs/psp.md):
- a session's PaymentIntent is `pi_` + the session id's tail; its status follows the session:
  open -> requires_payment_method, review -> processing, authorized -> requires_capture (then
  succeeded once fully or finally captured), declined / expired -> canceled;
- Stripe's session status: open; complete (authorized or in review); expired (expired, or
  declined: the fake's hosted page gives the buyer one attempt);
- each capture of a PaymentIntent is a Charge whose id is the FakePsp's capture id, so a
  per-seller capture can be refunded on its own (Stripe's multicapture keeps one charge per
  PaymentIntent; see docs/psp.md for what that changes).
"""

from __future__ import annotations

import itertools
from typing import Any

import attrs

from engine.gateway import CaptureStatus, PspRefundStatus, SessionStatus
from simulator.fake_psp import Capture, FakePsp, Session
from simulator.psp_refunds import Refund

API_VERSION = "2024-06-20"


@attrs.define
class SessionExtra:
    success_url: str | None
    cancel_url: str | None
    client_reference_id: str | None
    metadata: dict[str, str]
    created_s: int
    expires_at_s: int
    pi_metadata: dict[str, str] = attrs.Factory(dict)
    final: bool = False  # a final capture released the rest of the authorization


@attrs.define
class RefundExtra:
    metadata: dict[str, str]
    created_s: int


def pi_of(session_id: str) -> str:
    return "pi_" + session_id.removeprefix("cs_")


def session_of(pi_id: str) -> str:
    return "cs_" + pi_id.removeprefix("pi_")


@attrs.define(eq=False)
class StripeBooks:
    psp: FakePsp
    public_url: str
    sessions: dict[str, SessionExtra] = attrs.Factory(dict)
    charge_metadata: dict[str, dict[str, str]] = attrs.Factory(dict)
    refunds: dict[str, RefundExtra] = attrs.Factory(dict)  # by refund id
    refund_keys: dict[str, str] = attrs.Factory(dict)  # refund id -> idempotency key
    #: The payouts desk (psp/payout_desk.py), set by the face once it runs.
    payouts: Any = None
    _keys: itertools.count[int] = attrs.Factory(itertools.count)

    def now_s(self) -> int:
        return self.psp.clock.now_ms() // 1000

    def new_key(self, prefix: str) -> str:
        """A key for a request sent without Idempotency-Key (each one a new effect)."""
        return f"{prefix}_{self.psp.clock.now_ms():x}_{next(self._keys)}"

    # --- checkout sessions ---------------------------------------------------------------------
    def session(self, session_id: str) -> Session | None:
        if session_id not in self.sessions:
            return None  # made through the Python API, not this face: not ours to show
        return self.psp.sessions.get(session_id)

    def session_json(self, session: Session, expand: frozenset[str]) -> dict[str, Any]:
        extra = self.sessions[session.session_id]
        status = {
            SessionStatus.OPEN: "open",
            SessionStatus.REVIEW: "complete",
            SessionStatus.AUTHORIZED: "complete",
        }.get(session.status, "expired")
        pi_id = pi_of(session.session_id)
        return {
            "id": session.session_id,
            "object": "checkout.session",
            "amount_subtotal": session.amount.minor,
            "amount_total": session.amount.minor,
            "currency": session.amount.currency.lower(),
            "status": status,
            "payment_status": "paid" if session.captured_minor else "unpaid",
            "mode": "payment",
            "payment_intent": (
                self.intent_json(session, frozenset()) if "payment_intent" in expand else pi_id
            ),
            "url": f"{self.public_url}/pay/{session.session_id}" if status == "open" else None,
            "success_url": extra.success_url,
            "cancel_url": extra.cancel_url,
            "client_reference_id": extra.client_reference_id,
            "metadata": extra.metadata,
            "created": extra.created_s,
            "expires_at": extra.expires_at_s,
            "livemode": False,
        }

    # --- payment intents -----------------------------------------------------------------------
    def captures_of(self, session_id: str) -> list[Capture]:
        return [
            c
            for c in self.psp.captures.values()
            if c.session_id == session_id and c.status is CaptureStatus.CAPTURED
        ]

    def intent_status(self, session: Session) -> str:
        if session.status is SessionStatus.OPEN:
            return "requires_payment_method"
        if session.status is SessionStatus.REVIEW:
            return "processing"
        if session.status is SessionStatus.AUTHORIZED:
            done = self.sessions[session.session_id].final
            full = session.captured_minor >= session.amount.minor
            return "succeeded" if done or full else "requires_capture"
        return "canceled"

    def capturable_minor(self, session: Session) -> int:
        if self.intent_status(session) != "requires_capture":
            return 0
        return session.amount.minor - session.captured_minor

    def intent_json(
        self, session: Session, expand: frozenset[str], latest: str | None = None
    ) -> dict[str, Any]:
        extra = self.sessions[session.session_id]
        captures = self.captures_of(session.session_id)
        latest = latest or (captures[-1].capture_id if captures else None)
        declined = session.status is SessionStatus.DECLINED
        return {
            "id": pi_of(session.session_id),
            "object": "payment_intent",
            "amount": session.amount.minor,
            "amount_capturable": self.capturable_minor(session),
            "amount_received": session.captured_minor,
            "currency": session.amount.currency.lower(),
            "status": self.intent_status(session),
            "capture_method": "manual",
            "cancellation_reason": "abandoned" if session.status is SessionStatus.EXPIRED else None,
            "last_payment_error": (
                {"type": "card_error", "code": "card_declined", "message": "declined"}
                if declined
                else None
            ),
            "latest_charge": (
                self.charge_json(self.psp.captures_by_id[latest])
                if latest and "latest_charge" in expand
                else latest
            ),
            "metadata": extra.pi_metadata,
            "created": extra.created_s,
            "livemode": False,
        }

    # --- charges (one per capture) -------------------------------------------------------------
    def charge_json(self, capture: Capture) -> dict[str, Any]:
        return {
            "id": capture.capture_id,
            "object": "charge",
            "amount": capture.amount.minor,
            "amount_captured": capture.amount.minor,
            "amount_refunded": capture.refunded_minor,
            "captured": True,
            "currency": capture.amount.currency.lower(),
            "payment_intent": pi_of(capture.session_id),
            "refunded": capture.refunded_minor >= capture.amount.minor,
            "status": "succeeded",
            "metadata": self.charge_metadata.get(capture.capture_id, {}),
            "created": capture.captured_at_ms // 1000,
            "livemode": False,
        }

    # --- refunds ---------------------------------------------------------------------------------
    def refund_json(self, refund: Refund) -> dict[str, Any]:
        assert refund.refund_id is not None, refund
        extra = self.refunds.get(refund.refund_id, RefundExtra({}, refund.created_at_ms // 1000))
        capture = self.psp.captures_by_id.get(refund.capture_id)
        failed = refund.status is PspRefundStatus.FAILED
        return {
            "id": refund.refund_id,
            "object": "refund",
            "amount": refund.amount.minor,
            "charge": refund.capture_id,
            "currency": refund.amount.currency.lower(),
            "payment_intent": None if capture is None else pi_of(capture.session_id),
            "status": refund.status.value,
            "failure_reason": refund.reason if failed else None,
            "reason": None,
            "metadata": extra.metadata,
            "created": extra.created_s,
        }

    def listed_refunds(self) -> list[Refund]:
        """The refunds made through this face, newest first (Stripe's list order)."""
        found = [self.psp.refunds[self.refund_keys[r]] for r in self.refund_keys]
        return found[::-1]
