"""The official `stripe` library drives the fake PSP's HTTP face over a real socket: a Checkout
Session created, paid on the hosted page, captured in two parts (multicapture), refunded; every
webhook on the way verified by `stripe.Webhook.construct_event`; Idempotency-Key honoured as
Stripe honours it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stripe

from psp.objects import pi_of
from tests.psp.running import SECRET, running_psp


def session_params(unit_amount: int = 2500, currency: str = "eur") -> dict[str, Any]:
    return {
        "mode": "payment",
        "line_items": [
            {
                "quantity": 2,
                "price_data": {
                    "currency": currency,
                    "unit_amount": unit_amount,
                    "product_data": {"name": "Two mugs"},
                },
            }
        ],
        "payment_intent_data": {"capture_method": "manual", "metadata": {"cart": "c-1"}},
        "success_url": "https://shop.example/thanks",
        "cancel_url": "https://shop.example/cart",
        "client_reference_id": "pay_1",
        "metadata": {"checkout": "c-1"},
    }


async def test_create_pay_capture_refund_and_verified_webhooks() -> None:
    async with running_psp() as psp, httpx.AsyncClient() as http:
        v1 = psp.client().v1
        session = await v1.checkout.sessions.create_async(
            session_params(), {"idempotency_key": "pay_1"}
        )
        assert (session.status, session.payment_status, session.amount_total) == (
            "open",
            "unpaid",
            5000,
        )
        assert session.currency == "eur" and session.metadata == {"checkout": "c-1"}
        assert session.url == f"{psp.url}/pay/{session.id}"

        # The buyer pays on the hosted page and is sent back to the shop.
        paid = await http.post(session.url, data={"card_number": "4242 4242 4242 4242"})
        assert (paid.status_code, paid.headers["location"]) == (
            303,
            "https://shop.example/thanks",
        )

        done = await v1.checkout.sessions.retrieve_async(session.id, {"expand": ["payment_intent"]})
        assert done.status == "complete" and done.url is None
        intent = done.payment_intent
        assert (intent.status, intent.amount_capturable, intent.capture_method) == (
            "requires_capture",
            5000,
            "manual",
        )

        # Two sellers' orders: two partial captures of one PaymentIntent.
        first = await v1.payment_intents.capture_async(
            intent.id,
            {"amount_to_capture": 3000, "final_capture": False, "metadata": {"ord_1": "captured"}},
            {"idempotency_key": "ord_1"},
        )
        assert (first.status, first.amount_received, first.amount_capturable) == (
            "requires_capture",
            3000,
            2000,
        )
        second = await v1.payment_intents.capture_async(
            intent.id, {"amount_to_capture": 2000}, {"idempotency_key": "ord_2"}
        )
        assert (second.status, second.amount_received) == ("succeeded", 5000)
        assert first.latest_charge != second.latest_charge
        assert psp.face.psp.captured_total() == {"EUR": 5000}

        charge = await v1.charges.retrieve_async(first.latest_charge)
        assert (charge.amount_captured, charge.payment_intent) == (3000, intent.id)
        refund = await v1.refunds.create_async(
            {"charge": first.latest_charge, "amount": 1200}, {"idempotency_key": "re_key_1"}
        )
        assert (refund.status, refund.amount, refund.currency) == ("succeeded", 1200, "eur")
        assert (await v1.refunds.retrieve_async(refund.id)).charge == first.latest_charge
        assert psp.face.psp.refunded_total() == {"EUR": 1200}

        # Every outcome was sent as a webhook that Stripe's own verification accepts.
        delivered = await psp.wait_for_webhooks(4)
        events = [
            stripe.Webhook.construct_event(body, header, SECRET) for body, header in delivered
        ]
        assert [e.type for e in events] == [
            "session.authorized",
            "capture.succeeded",
            "capture.succeeded",
            "refund.succeeded",
        ]
        assert events[0].data.object.reference == "pay_1"
        assert events[1].data.object.capture_id == first.latest_charge
        assert events[3].data.object.refund_id == refund.id
        assert all(e.livemode is False and e.object == "event" for e in events)
        body, header = delivered[0]
        with pytest.raises(stripe.SignatureVerificationError):
            stripe.Webhook.construct_event(body, header, "whsec_someone_else")


async def test_idempotency_key_replays_the_first_answer_and_refuses_other_parameters() -> None:
    async with running_psp() as psp:
        v1 = psp.client().v1
        first = await v1.checkout.sessions.create_async(
            session_params(), {"idempotency_key": "k-1"}
        )
        again = await v1.checkout.sessions.create_async(
            session_params(), {"idempotency_key": "k-1"}
        )
        assert again.id == first.id
        assert again.last_response.headers.get("Idempotent-Replayed") == "true"
        assert len(psp.face.psp.sessions) == 1
        with pytest.raises(stripe.IdempotencyError) as reused:
            await v1.checkout.sessions.create_async(
                session_params(unit_amount=999), {"idempotency_key": "k-1"}
            )
        assert reused.value.http_status == 400
        assert "same parameters" in str(reused.value)
        # Without a key each request is a new session, as at Stripe.
        a = await v1.checkout.sessions.create_async(session_params())
        b = await v1.checkout.sessions.create_async(session_params())
        assert len({first.id, a.id, b.id}) == 3

        # A capture retried with its key captures once; a decline is replayed as well.
        async with httpx.AsyncClient() as http:
            await http.post(first.url, data={"card_number": "4242424242424242"})
        pi = pi_of(first.id)
        one = await v1.payment_intents.capture_async(
            pi, {"amount_to_capture": 1000, "final_capture": False}, {"idempotency_key": "o-1"}
        )
        two = await v1.payment_intents.capture_async(
            pi, {"amount_to_capture": 1000, "final_capture": False}, {"idempotency_key": "o-1"}
        )
        assert one.latest_charge == two.latest_charge
        assert psp.face.psp.capture_calls["o-1"] == 1  # the replay never reached the PSP
        assert psp.face.psp.captured_total() == {"EUR": 1000}
