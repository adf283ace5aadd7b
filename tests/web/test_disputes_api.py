"""GET /v1/disputes[/{id}] through the Quart test client (who sees what, bad paging input as
problem+json, a disputed order refused a refund) and one chargeback over real sockets (the fake
PSP's face sends Stripe-shaped `charge.dispute.*` webhooks; the HTTP Gateway reads
`GET /v1/disputes/{id}`)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import trio
from trio.testing import MockClock

from engine.gateway import PspDisputeStatus
from tests.web.conftest import Api
from tests.web.test_access_and_webhooks import deliver_all, paid_payment
from tests.web.test_e2e_http import FLOW_TIMEOUT_S, running_world
from tests.web.test_payments_api import problem_of
from tests.web.test_refunds_api import order_ids, post_refund
from web.http_gateway import open_http_gateway
from web.keys import create_api_key

TYPE = "https://payengine.dev/problems/"


async def get(api: Api, path: str, key: str) -> Any:
    return await api.client.get(path, headers=api.auth(key))


async def test_disputes_are_read_by_admin_and_their_own_merchant_only(
    autojump_clock: MockClock, api: Api
) -> None:
    payment = await paid_payment(api)
    orders = await order_ids(api, payment)
    order = await api.runtime.store.get_order(orders["s1"])
    assert order is not None and order.psp_capture_id is not None
    opened = api.psp.dispute_book.open(order.psp_capture_id)
    assert opened is not None
    assert set(await deliver_all(api)) == {"applied", "ignored"}
    s1, s2 = await api.merchant_key("s1"), await api.merchant_key("s2")

    r = await get(api, f"/v1/disputes/{opened.dispute_id}", api.admin)
    assert r.status_code == 200, await r.get_data()
    dispute = json.loads(await r.get_data())
    assert dispute["object"] == "dispute" and dispute["status"] == "open"
    assert (dispute["order_id"], dispute["amount"], dispute["currency"]) == (
        orders["s1"],
        "12.34",
        "EUR",
    )
    own = await get(api, f"/v1/disputes/{opened.dispute_id}", s1)
    assert json.loads(await own.get_data()) == dispute
    await problem_of(await get(api, f"/v1/disputes/{opened.dispute_id}", s2), 404)
    await problem_of(await get(api, "/v1/disputes/dp_missing", api.admin), 404)
    await problem_of(await get(api, "/v1/disputes", api.storefront), 403)
    for key, expected in ((api.admin, [dispute]), (s1, [dispute]), (s2, [])):
        listed = json.loads(await (await get(api, "/v1/disputes", key)).get_data())
        assert (listed["data"], listed["has_more"]) == (expected, False)
    for bad in ("limit=0", "limit=x", "starting_after=" + "d" * 129):
        problem = await problem_of(await get(api, f"/v1/disputes?{bad}", api.admin), 422)
        assert problem["type"] == TYPE + "validation-failed"

    # The order is disputed: a refund is refused with its own problem, and writes nothing.
    trial = await api.runtime.store.trial_balance()
    refused = await post_refund(api, {"order_id": orders["s1"]}, key="rd1")
    assert (await problem_of(refused, 409))["type"] == TYPE + "refund-order-disputed"
    assert await api.runtime.store.list_refunds(orders["s1"], 10) == []
    assert await api.runtime.store.trial_balance() == trial

    assert api.psp.dispute_book.close(opened.dispute_id, won=False)
    await deliver_all(api)
    lost = json.loads(await (await get(api, f"/v1/disputes/{opened.dispute_id}", s1)).get_data())
    assert lost["status"] == "lost"


async def test_chargeback_over_real_http() -> None:
    """Over real sockets: Hypercorn serves our API and the fake PSP's face; the PSP disputes a
    capture, its signed `charge.dispute.*` webhooks come over HTTP, and the engine ends the
    dispute as the PSP's `GET /v1/disputes/{id}` says."""
    async with running_world() as (api_url, psp_url, runtime, face), httpx.AsyncClient() as http:
        _, storefront = await create_api_key(
            runtime.store, runtime.ids, runtime.clock, "storefront"
        )
        _, admin = await create_api_key(runtime.store, runtime.ids, runtime.clock, "admin")
        auth = {"Authorization": f"Bearer {storefront}"}
        body = {
            "checkout_id": "e2e-dispute",
            "buyer": "buyer-1",
            "currency": "EUR",
            "orders": [{"seller_id": "s1", "amount": "50.00"}],
            "return_url": "https://shop.example/done",
        }
        created = await http.post(
            f"{api_url}/v1/payments", json=body, headers={**auth, "Idempotency-Key": "p1"}
        )
        payment = created.json()
        paid = await http.post(payment["hosted_url"], data={"card_number": "4242 4242 4242 4242"})
        assert paid.status_code == 303
        with trio.fail_after(FLOW_TIMEOUT_S):
            while (await http.get(f"{api_url}/v1/payments/{payment['id']}", headers=auth)).json()[
                "status"
            ] != "completed":
                await trio.sleep(0.05)
        order = await runtime.store.get_order(payment["orders"][0]["id"])
        assert order is not None and order.psp_capture_id is not None
        opened = face.psp.dispute_book.open(order.psp_capture_id)
        assert opened is not None

        async def engine_says(status: str) -> dict[str, Any]:
            with trio.fail_after(FLOW_TIMEOUT_S):
                while True:
                    got = await http.get(
                        f"{api_url}/v1/disputes/{opened.dispute_id}",
                        headers={"Authorization": f"Bearer {admin}"},
                    )
                    if got.status_code == 200 and got.json()["status"] == status:
                        return dict(got.json())
                    await trio.sleep(0.05)

        dispute = await engine_says("open")
        assert dispute["amount"] == "50.00"
        trial = await runtime.store.trial_balance()
        assert trial[("chargebacks", "EUR")] == 5_000
        # The PSP's own Stripe face serves the dispute, as the HTTP Gateway reads it.
        stripe_face = await http.get(
            f"{psp_url}/v1/disputes/{opened.dispute_id}",
            headers={"Authorization": "Bearer sk_test_payengine_fake_psp"},
        )
        assert stripe_face.json()["object"] == "dispute"
        assert stripe_face.json()["status"] == "needs_response"
        async with open_http_gateway(psp_url) as gateway:
            said = await gateway.query_dispute(opened.dispute_id)
            assert (said.status, said.amount_minor, said.currency) == (
                PspDisputeStatus.NEEDS_RESPONSE,
                5_000,
                "EUR",
            )
            assert said.capture_id == order.psp_capture_id
            missing = await gateway.query_dispute("dp_missing")
            assert missing.status is PspDisputeStatus.NOT_FOUND

        assert face.psp.dispute_book.close(opened.dispute_id, won=True)
        await engine_says("won")
        with trio.fail_after(FLOW_TIMEOUT_S):
            while not any(b"charge.dispute.funds_reinstated" in s for s, _ in face.pump.sent):
                await trio.sleep(0.05)
        trial = await runtime.store.trial_balance()
        assert trial.get(("chargebacks", "EUR"), 0) == 0
        assert trial[("psp_clearing", "EUR")] == 5_000
