"""The `Gateway` port over Stripe's API, through the official `stripe` library's async client.

Why it exists: the engine's pay-in flow runs over real sockets exactly as it would against a
real PSP; the same adapter drives the fake PSP (psp/, in tests, the demo and `serve`) and a
real Stripe test account (change `base_url` and `api_key`; docs/psp.md says how). It uses
`stripe.StripeClient` with its `HTTPXClient`, whose httpx client runs on trio.

Mapping (docs/psp.md has the trade-offs):
- a checkout is a Checkout Session (`mode=payment`, one line item of the cart's total, manual
  capture, multicapture requested), created with Idempotency-Key = the payment id;
- an order's capture is a partial capture of the session's PaymentIntent with
  `final_capture=false` (Stripe's multicapture), Idempotency-Key = the order id, and metadata
  `{<order id>: "captured"}` so that `query_capture` finds it by key: a PaymentIntent search on
  that metadata (NOT_FOUND when none has it; Stripe's search lags by up to a minute, and a
  NOT_FOUND only makes the engine capture again with the same key, which Stripe answers from
  its idempotency store). The capture id is the capture's charge;
- a refund is a Refund of that charge, Idempotency-Key = our refund id, metadata
  `{payengine_refund: <key>}`; `query_refund` scans the newest refunds for that metadata
  (Stripe cannot look a refund up by key), at most `refund_scan_pages_max` pages.
- Unknown outcomes (connection errors, timeouts, 5xx, 409, 429, an authentication or
  permission error) raise `GatewayUnavailable`, never a decline: the engine retries with the
  same key or queries. A capture refused by Stripe (402 card error, 400 not capturable or more
  than capturable) is DECLINED; a refund refused is a FAILED result with a `RefundRefusal`;
  a key reused with other parameters raises `IdempotencyKeyReused`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import stripe

from engine.gateway import (
    CaptureResult,
    CaptureStatus,
    DisputeResult,
    GatewayUnavailable,
    IdempotencyKeyReused,
    PspDisputeStatus,
    PspRefundStatus,
    RefundRefusal,
    RefundResult,
    Registration,
    SessionStatus,
)
from engine.money import Money

#: Per-call deadline; the engine also bounds each call with its own psp_call_timeout_s.
PSP_HTTP_TIMEOUT_S = 10.0
#: The API key of the in-process fake PSP (psp/app.py's DEFAULT_API_KEY; test mode only).
FAKE_PSP_API_KEY = "sk_test_payengine_fake_psp"
#: Sessions whose PaymentIntent id is remembered (saves a call per capture; ids never change).
SESSION_INTENTS_KEPT_MAX = 10_000
#: Pages of 100 refunds `query_refund` reads before it answers NOT_FOUND.
REFUND_SCAN_PAGES_MAX = 10
#: The metadata key that tags our refunds.
REFUND_METADATA_KEY = "payengine_refund"
#: Stripe's longest metadata key: a longer capture key is not tagged (never queried as found).
METADATA_KEY_LENGTH_MAX = 40


def _unknown(call: str, exc: stripe.StripeError) -> GatewayUnavailable:
    status = getattr(exc, "http_status", None)
    return GatewayUnavailable(f"PSP call {call} failed: {type(exc).__name__} {status or ''}")


class HttpGateway:
    def __init__(self, client: stripe.StripeClient) -> None:
        self._client = client
        self._intents: OrderedDict[str, str] = OrderedDict()

    @property
    def _v1(self) -> Any:
        return self._client.v1

    async def register_checkout(
        self, nonce: str, amount: Money, return_url: str | None
    ) -> Registration:
        params: dict[str, Any] = {
            "mode": "payment",
            "client_reference_id": nonce,
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": amount.currency.lower(),
                        "unit_amount": amount.minor,
                        "product_data": {"name": f"Marketplace checkout {nonce}"},
                    },
                }
            ],
            "payment_intent_data": {"capture_method": "manual", "metadata": {"payment": nonce}},
            "payment_method_options": {"card": {"request_multicapture": "if_available"}},
        }
        if return_url:
            params["success_url"] = return_url
        try:
            session = await self._v1.checkout.sessions.create_async(
                params, {"idempotency_key": nonce}
            )
        except stripe.StripeError as exc:
            raise _unknown("create session", exc) from exc
        if not session.get("url"):
            raise GatewayUnavailable(f"PSP session {session.get('id')} has no hosted page URL")
        return Registration(str(session["id"]), str(session["url"]))

    async def _session(self, session_id: str) -> Any:
        try:
            return await self._v1.checkout.sessions.retrieve_async(
                session_id, {"expand": ["payment_intent"]}
            )
        except stripe.StripeError as exc:
            raise _unknown(f"retrieve session {session_id}", exc) from exc

    async def session_status(self, session_id: str) -> SessionStatus:
        return _session_status(await self._session(session_id))

    async def expire_session(self, session_id: str) -> SessionStatus:
        try:
            await self._v1.checkout.sessions.expire_async(session_id)
        except stripe.InvalidRequestError as exc:
            if exc.http_status != 400:  # 400: not open any more; its status says why
                raise _unknown(f"expire session {session_id}", exc) from exc
        except stripe.StripeError as exc:
            raise _unknown(f"expire session {session_id}", exc) from exc
        return await self.session_status(session_id)

    async def _intent_of(self, session_id: str) -> str:
        intent = self._intents.get(session_id)
        if intent is None:
            session = await self._session(session_id)
            found = session.get("payment_intent")
            if not found:
                raise GatewayUnavailable(f"PSP session {session_id} has no PaymentIntent")
            intent = str(found if isinstance(found, str) else found["id"])
            self._intents[session_id] = intent
            while len(self._intents) > SESSION_INTENTS_KEPT_MAX:
                self._intents.popitem(last=False)
        return intent

    async def capture(self, idempotency_key: str, session_id: str, amount: Money) -> CaptureResult:
        intent = await self._intent_of(session_id)
        params: dict[str, Any] = {"amount_to_capture": amount.minor, "final_capture": False}
        if len(idempotency_key) <= METADATA_KEY_LENGTH_MAX:
            params["metadata"] = {idempotency_key: "captured"}
        try:
            captured = await self._v1.payment_intents.capture_async(
                intent, params, {"idempotency_key": idempotency_key}
            )
        except stripe.CardError as exc:
            return CaptureResult(CaptureStatus.DECLINED, None, exc.code or "card_declined")
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 400 and exc.code in _CAPTURE_REFUSALS:
                return CaptureResult(CaptureStatus.DECLINED, None, exc.code)
            raise _unknown(f"capture {intent}", exc) from exc
        except stripe.StripeError as exc:
            raise _unknown(f"capture {intent}", exc) from exc
        return CaptureResult(CaptureStatus.CAPTURED, _charge_id(captured), None)

    async def query_capture(self, idempotency_key: str) -> CaptureResult:
        if len(idempotency_key) > METADATA_KEY_LENGTH_MAX:
            return CaptureResult(CaptureStatus.NOT_FOUND)
        query = f"metadata['{idempotency_key}']:'captured'"
        try:
            found = await self._v1.payment_intents.search_async({"query": query, "limit": 1})
            if not found["data"]:
                return CaptureResult(CaptureStatus.NOT_FOUND)
            intent = found["data"][0]
            charges = await self._v1.charges.list_async(
                {"payment_intent": intent["id"], "limit": 100}
            )
        except stripe.StripeError as exc:
            raise _unknown(f"query capture {idempotency_key}", exc) from exc
        # The fake PSP keeps a charge per capture (tagged with its metadata); Stripe keeps one
        # charge per PaymentIntent, its latest.
        for charge in charges["data"]:
            if (charge.get("metadata") or {}).get(idempotency_key) == "captured":
                return CaptureResult(CaptureStatus.CAPTURED, str(charge["id"]))
        return CaptureResult(CaptureStatus.CAPTURED, _charge_id(intent))

    async def refund(self, idempotency_key: str, capture_id: str, amount: Money) -> RefundResult:
        params = {
            "charge": capture_id,
            "amount": amount.minor,
            "metadata": {REFUND_METADATA_KEY: idempotency_key},
        }
        if amount.minor <= 0:
            return RefundResult(
                PspRefundStatus.FAILED, None, RefundRefusal.AMOUNT_NOT_POSITIVE.value
            )
        try:
            refund = await self._v1.refunds.create_async(
                params, {"idempotency_key": idempotency_key}
            )
        except stripe.IdempotencyError as exc:
            raise IdempotencyKeyReused(str(exc)) from exc
        except stripe.InvalidRequestError as exc:
            refusal = _refund_refusal(exc)
            if refusal is None:
                raise _unknown(f"refund {capture_id}", exc) from exc
            return RefundResult(PspRefundStatus.FAILED, None, refusal.value)
        except stripe.StripeError as exc:
            raise _unknown(f"refund {capture_id}", exc) from exc
        return _refund_result(refund)

    async def query_refund(self, idempotency_key: str) -> RefundResult:
        params: dict[str, Any] = {"limit": 100}
        try:
            for _ in range(REFUND_SCAN_PAGES_MAX):
                page = await self._v1.refunds.list_async(params)
                for refund in page["data"]:
                    if (refund.get("metadata") or {}).get(REFUND_METADATA_KEY) == idempotency_key:
                        return _refund_result(refund)
                if not page["has_more"] or not page["data"]:
                    break
                params["starting_after"] = page["data"][-1]["id"]
        except stripe.StripeError as exc:
            raise _unknown(f"query refund {idempotency_key}", exc) from exc
        return RefundResult(PspRefundStatus.NOT_FOUND)

    async def query_dispute(self, dispute_id: str) -> DisputeResult:
        """`GET /v1/disputes/{id}`: Stripe's dispute object as the port's `DisputeResult`."""
        try:
            dispute = await self._v1.disputes.retrieve_async(dispute_id)
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                return DisputeResult(PspDisputeStatus.NOT_FOUND, dispute_id)
            raise _unknown(f"query dispute {dispute_id}", exc) from exc
        except stripe.StripeError as exc:
            raise _unknown(f"query dispute {dispute_id}", exc) from exc
        return _dispute_result(dispute)


def _dispute_result(dispute: Any) -> DisputeResult:
    try:
        status = PspDisputeStatus(str(dispute["status"]))
    except ValueError:
        raise GatewayUnavailable(
            f"PSP dispute {dispute.get('id')} has status {dispute['status']!r}"
        ) from None
    charge = dispute.get("charge")
    capture_id = charge if isinstance(charge, str) or charge is None else charge["id"]
    return DisputeResult(
        status,
        str(dispute["id"]),
        None if capture_id is None else str(capture_id),
        int(dispute["amount"]),
        str(dispute["currency"]).upper(),
        None if dispute.get("reason") is None else str(dispute["reason"]),
    )


#: Stripe's 400 codes that refuse a capture outright (nothing captured).
_CAPTURE_REFUSALS = frozenset({"payment_intent_unexpected_state", "amount_too_large"})


def _session_status(session: Any) -> SessionStatus:
    """Stripe's session (with its PaymentIntent expanded) as the port's status."""
    intent = session.get("payment_intent")
    intent_status = intent.get("status") if isinstance(intent, dict) else None
    status = session.get("status")
    if status == "open":
        return SessionStatus.OPEN
    if status == "complete":
        return SessionStatus.REVIEW if intent_status == "processing" else SessionStatus.AUTHORIZED
    if status == "expired":
        declined = isinstance(intent, dict) and intent.get("last_payment_error")
        return SessionStatus.DECLINED if declined else SessionStatus.EXPIRED
    raise GatewayUnavailable(f"PSP session {session.get('id')} has status {status!r}")


def _charge_id(intent: Any) -> str | None:
    charge = intent.get("latest_charge")
    if charge is None:
        return None
    return str(charge if isinstance(charge, str) else charge["id"])


def _refund_refusal(exc: stripe.InvalidRequestError) -> RefundRefusal | None:
    if exc.http_status == 404 and exc.param == "charge":
        return RefundRefusal.CAPTURE_NOT_FOUND
    if exc.http_status != 400:
        return None
    return {
        "amount_too_large": RefundRefusal.EXCEEDS_CAPTURED,
        "charge_already_refunded": RefundRefusal.EXCEEDS_CAPTURED,
        "charge_not_refundable": RefundRefusal.CAPTURE_NOT_CAPTURED,
        "refund_currency_mismatch": RefundRefusal.CURRENCY_MISMATCH,
        "charge_disputed": RefundRefusal.CAPTURE_DISPUTED,
    }.get(exc.code or "")


def _refund_result(refund: Any) -> RefundResult:
    status = PspRefundStatus(refund["status"])
    reason = refund.get("failure_reason") if status is PspRefundStatus.FAILED else None
    return RefundResult(status, str(refund["id"]), None if reason is None else str(reason))


@asynccontextmanager
async def open_http_gateway(
    base_url: str, api_key: str = FAKE_PSP_API_KEY, timeout_s: float = PSP_HTTP_TIMEOUT_S
) -> AsyncIterator[HttpGateway]:
    """A gateway to the Stripe API at `base_url` (the fake PSP, or https://api.stripe.com)."""
    async with stripe_client(base_url, api_key, timeout_s) as client:
        yield HttpGateway(client)


@asynccontextmanager
async def stripe_client(
    base_url: str, api_key: str, timeout_s: float
) -> AsyncIterator[stripe.StripeClient]:
    """The `stripe` library's client at `base_url`, without its own retries: the engine
    retries, with the same idempotency key (payments and payouts alike)."""
    http = stripe.HTTPXClient(timeout=timeout_s)
    client = stripe.StripeClient(
        api_key,
        base_addresses={"api": base_url.rstrip("/")},
        http_client=http,
        max_network_retries=0,
    )
    try:
        yield client
    finally:
        await http.close_async()  # type: ignore[no-untyped-call]
