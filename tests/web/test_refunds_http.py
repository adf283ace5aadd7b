"""Refunds over real sockets: `HttpGateway.refund/query_refund` (Stripe's `POST /v1/refunds` and a
scan of `GET /v1/refunds` for the key's metadata) against the fake PSP's HTTP face, the refund
webhooks posted, signed, to our API, which records and ignores them (no engine refund flow yet):
the books do not move."""

from __future__ import annotations

import httpx
import pytest
import trio

from engine.gateway import (
    GatewayUnavailable,
    IdempotencyKeyReused,
    PspEventKind,
    PspNotification,
    PspRefundStatus,
    RefundRefusal,
)
from engine.money import Money
from psp.app import PspFace
from tests.web.test_e2e_http import FLOW_TIMEOUT_S, SECRET, running_world
from web.http_gateway import FAKE_PSP_API_KEY, open_http_gateway
from web.keys import create_api_key
from web.psp_wire import decode_event, encode_event
from web.runtime import Runtime
from web.signature import sign_header


async def _paid_order(api_url: str, runtime: Runtime, face: PspFace) -> tuple[str, str, str]:
    """One 40.00 EUR order captured through the API: (admin key, payment id, capture id)."""
    _, storefront = await create_api_key(runtime.store, runtime.ids, runtime.clock, "storefront")
    _, admin = await create_api_key(runtime.store, runtime.ids, runtime.clock, "admin")
    body = {
        "checkout_id": "rf-1",
        "buyer": "buyer-1",
        "currency": "EUR",
        "orders": [{"seller_id": "s1", "amount": "40.00"}],
    }
    async with httpx.AsyncClient() as http:
        headers = {"Authorization": f"Bearer {storefront}", "Idempotency-Key": "rf-k1"}
        created = await http.post(f"{api_url}/v1/payments", json=body, headers=headers)
        assert created.status_code == 201, created.text
        paid = await http.post(
            created.json()["hosted_url"], data={"card_number": "4242 4242 4242 4242"}
        )
        assert paid.status_code == 200
        with trio.fail_after(FLOW_TIMEOUT_S):
            while not (await runtime.store.count_transactions()):
                await trio.sleep(0.05)
    (capture,) = face.psp.captures.values()
    return admin, created.json()["id"], capture.capture_id


async def test_refunds_over_http_are_idempotent_partial_and_ignored_by_the_engine() -> None:
    async with (
        running_world() as (api_url, psp_url, runtime, face),
        open_http_gateway(psp_url) as gateway,
        httpx.AsyncClient() as http,
    ):
        admin, payment_id, capture_id = await _paid_order(api_url, runtime, face)
        trial_before = await runtime.store.trial_balance()

        first = await gateway.refund("rf_1", capture_id, Money(1000, "EUR"))
        assert first.status is PspRefundStatus.SUCCEEDED and first.refund_id is not None
        assert await gateway.refund("rf_1", capture_id, Money(1000, "EUR")) == first
        assert await gateway.query_refund("rf_1") == first
        with pytest.raises(IdempotencyKeyReused):
            await gateway.refund("rf_1", capture_id, Money(500, "EUR"))

        # Refusals come back as FAILED results with the PSP's reason. As at Stripe, a refusal
        # leaves no refund object to find (NOT_FOUND), and the same key answers it again.
        too_much = await gateway.refund("rf_2", capture_id, Money(3001, "EUR"))
        assert (too_much.status, too_much.refund_id, too_much.reason) == (
            PspRefundStatus.FAILED,
            None,
            RefundRefusal.EXCEEDS_CAPTURED.value,
        )
        assert (await gateway.query_refund("rf_2")).status is PspRefundStatus.NOT_FOUND
        assert await gateway.refund("rf_2", capture_id, Money(3001, "EUR")) == too_much
        unknown = await gateway.refund("rf_3", "cap_nope", Money(100, "EUR"))
        assert unknown.reason == RefundRefusal.CAPTURE_NOT_FOUND.value
        assert (await gateway.query_refund("rf_none")).status is PspRefundStatus.NOT_FOUND

        # The PSP refunds but the answer is lost (503): a retry finds the one refund.
        face.psp.script("refund", "timeout_after")
        with pytest.raises(GatewayUnavailable):
            await gateway.refund("rf_4", capture_id, Money(3000, "EUR"))
        retried = await gateway.refund("rf_4", capture_id, Money(3000, "EUR"))
        assert retried.refund_id == face.psp.refunds["rf_4"].refund_id
        face.psp.script("query_refund", "unavailable")
        with pytest.raises(GatewayUnavailable):
            await gateway.query_refund("rf_4")
        # Nothing is left to refund.
        assert (await gateway.refund("rf_5", capture_id, Money(1, "EUR"))).reason == (
            RefundRefusal.EXCEEDS_CAPTURED.value
        )
        assert face.psp.refunded_total() == {"EUR": 4000}
        assert len([r for r in face.psp.refunds.values() if r.refund_id]) == 2

        # Malformed requests are the PSP's 400 (Stripe's error object), never a refund.
        auth = {"Authorization": f"Bearer {FAKE_PSP_API_KEY}", "Idempotency-Key": "rf_bad"}
        bad = await http.post(
            f"{psp_url}/v1/refunds", data={"charge": capture_id, "amount": "10.00"}, headers=auth
        )
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "amount"
        assert "integer" in bad.json()["error"]["message"]
        keyless = await http.post(
            f"{psp_url}/v1/refunds", data={"charge": capture_id, "amount": "10"}
        )
        assert keyless.status_code == 401 and "rf_bad" not in face.psp.refunds

        # Both refund webhooks reach our API, which records them and moves no money.
        with trio.fail_after(FLOW_TIMEOUT_S):
            while True:
                kinds = [decode_event(body) for body, _ in face.pump.sent]
                refunds = [e for e in kinds if e.kind is PspEventKind.REFUND_SUCCEEDED]
                if len(refunds) == 2:
                    break
                await trio.sleep(0.05)
        assert {e.reference for e in refunds} == {"rf_1", "rf_4"}
        assert {e.refund_id for e in refunds} == {first.refund_id, retried.refund_id}
        # They were recorded: sent again (re-signed, as a PSP retry is), each is a duplicate.
        now_s = runtime.clock.now_ms() // 1000
        for body, _ in face.pump.sent:
            if decode_event(body).kind is PspEventKind.REFUND_SUCCEEDED:
                again = await http.post(
                    f"{api_url}/v1/psp/webhooks",
                    content=body,
                    headers={"Stripe-Signature": sign_header([SECRET], now_s, body)},
                )
                assert again.status_code == 200 and again.json()["outcome"] == "duplicate"
        # A refund event naming the order itself (no refund of ours has that id) is recorded as
        # an unknown reference, never read as a failed capture.
        (order_id,) = face.psp.captures
        forged = encode_event(
            PspNotification(
                "evt_refund_on_order",
                PspEventKind.REFUND_FAILED,
                order_id,
                runtime.clock.now_ms(),
                capture_id=capture_id,
                refund_id="re_x",
            )
        )
        sent = await http.post(
            f"{api_url}/v1/psp/webhooks",
            content=forged,
            headers={"Stripe-Signature": sign_header([SECRET], now_s, forged)},
        )
        assert sent.status_code == 200 and sent.json()["outcome"] == "unknown_reference"
        payment = await http.get(
            f"{api_url}/v1/payments/{payment_id}", headers={"Authorization": f"Bearer {admin}"}
        )
        assert payment.json()["status"] == "completed"
        assert await runtime.store.trial_balance() == trial_before
