"""POST/GET /v1/refunds through the Quart test client: each bad input's exact problem+json
(and that it wrote nothing), Idempotency-Key, merchant keys limited to their own orders; and
one refund over real sockets (Hypercorn, the HTTP Gateway, the PSP's signed webhook).

Our API's refunds; the fake PSP's own /v1/refunds is tests/web/test_refunds_http.py.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio
from trio.testing import MockClock

from engine.states import OrderStatus
from tests.web.conftest import Api
from tests.web.test_access_and_webhooks import deliver_all, paid_payment
from tests.web.test_e2e_http import FLOW_TIMEOUT_S, running_world
from tests.web.test_payments_api import body, create, problem_of
from web.keys import create_api_key

TYPE = "https://payengine.dev/problems/"


async def post_refund(api: Api, payload: Any, key: str | None = "r1", as_key: str = "") -> Any:
    headers = api.auth(as_key or api.storefront)
    if key is not None:
        headers["Idempotency-Key"] = key
    if isinstance(payload, bytes | str):
        headers["Content-Type"] = "application/json"
        return await api.client.post("/v1/refunds", data=payload, headers=headers)
    return await api.client.post("/v1/refunds", json=payload, headers=headers)


async def order_ids(api: Api, payment: dict[str, Any]) -> dict[str, str]:
    """seller id -> order id."""
    return {o.seller_id: o.order_id for o in await api.runtime.store.get_orders(payment["id"])}


async def nothing_written(api: Api, order_id: str, trial: dict[tuple[str, str], int]) -> None:
    assert await api.runtime.store.list_refunds(order_id, 10) == []
    assert await api.runtime.store.list_unfinished_refunds(10) == []
    assert await api.runtime.store.trial_balance() == trial
    assert api.psp.refunds == {}


async def settled(api: Api, refund_id: str) -> dict[str, Any]:
    for _ in range(100):
        await deliver_all(api)
        r = await api.client.get(f"/v1/refunds/{refund_id}", headers=api.auth(api.storefront))
        refund: dict[str, Any] = json.loads(await r.get_data())
        if refund["status"] in ("succeeded", "failed"):
            return refund
        await trio.sleep(0.5)
    raise AssertionError(f"refund {refund_id} never settled")


async def test_refund_is_created_read_listed_and_settled(
    autojump_clock: MockClock, api: Api
) -> None:
    payment = await paid_payment(api)
    orders = await order_ids(api, payment)
    r = await post_refund(api, {"order_id": orders["s1"], "amount": "2.34", "reason": "late"})
    assert r.status_code == 201, await r.get_data()
    refund = json.loads(await r.get_data())
    assert (refund["amount"], refund["currency"], refund["status"]) == ("2.34", "EUR", "requested")
    assert refund["object"] == "refund" and refund["reason"] == "late"
    assert r.headers["Location"] == f"/v1/refunds/{refund['id']}"
    replay = await post_refund(api, {"order_id": orders["s1"], "amount": "2.34", "reason": "late"})
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert json.loads(await replay.get_data())["id"] == refund["id"]
    done = await settled(api, refund["id"])
    assert done["status"] == "succeeded" and done["psp_refund_id"]
    rest = await post_refund(api, {"order_id": orders["s1"]}, key="r2")  # all that is left
    assert rest.status_code == 201
    assert json.loads(await rest.get_data())["amount"] == "10.00"
    listed = await api.client.get(
        f"/v1/refunds?order_id={orders['s1']}&limit=1", headers=api.auth(api.admin)
    )
    page = json.loads(await listed.get_data())
    assert page["has_more"] is True and [x["id"] for x in page["data"]] == [refund["id"]]
    assert next(iter(api.psp.refunds)) == refund["id"]


@pytest.mark.parametrize(
    ("payload", "status", "slug", "pointer"),
    [
        ({"order_id": "ord_unknown"}, 422, "refund-order-not-found", "/order_id"),
        ({"order_id": "{s1}", "amount": 2.5}, 422, "validation-failed", "/amount"),
        ({"order_id": "{s1}", "amount": 250}, 422, "validation-failed", "/amount"),
        ({"order_id": "{s1}", "amount": "0"}, 422, "refund-amount-not-positive", "/amount"),
        ({"order_id": "{s1}", "amount": "-1.00"}, 422, "refund-amount-not-positive", "/amount"),
        ({"order_id": "{s1}", "amount": "1.234"}, 422, "validation-failed", "/amount"),
        ({"order_id": "{s1}", "currency": "USD"}, 422, "refund-currency-mismatch", "/currency"),
        ({"order_id": "{s1}", "amount": "12.35"}, 409, "refund-exceeds-captured", None),
        ({"order_id": "{s1}", "extra": 1}, 422, "validation-failed", None),
        ({"amount": "1.00"}, 422, "validation-failed", None),
    ],
)
async def test_bad_refunds_get_their_problem_and_write_nothing(
    autojump_clock: MockClock,
    api: Api,
    payload: dict[str, Any],
    status: int,
    slug: str,
    pointer: str | None,
) -> None:
    payment = await paid_payment(api)
    orders = await order_ids(api, payment)
    trial = await api.runtime.store.trial_balance()
    if payload.get("order_id") == "{s1}":
        payload = {**payload, "order_id": orders["s1"]}
    problem = await problem_of(await post_refund(api, payload), status)
    assert problem["type"] == TYPE + slug, problem
    if pointer is not None:
        assert [e["pointer"] for e in problem["errors"]] == [pointer]
    await nothing_written(api, orders["s1"], trial)
    # The key was not spent on a refusal: a good request with it goes through.
    ok = await post_refund(api, {"order_id": orders["s1"], "amount": "1.00"})
    assert ok.status_code == 201


async def test_uncaptured_order_is_refused(autojump_clock: MockClock, api: Api) -> None:
    payment = json.loads(await (await create(api, body(checkout_id="co-unpaid"))).get_data())
    orders = await order_ids(api, payment)
    order = await api.runtime.store.get_order(orders["s1"])
    assert order is not None and order.status is OrderStatus.NOT_STARTED
    trial = await api.runtime.store.trial_balance()
    problem = await problem_of(await post_refund(api, {"order_id": orders["s1"]}), 409)
    assert problem["type"] == TYPE + "refund-order-not-captured"
    await nothing_written(api, orders["s1"], trial)


async def test_refund_needs_an_idempotency_key(autojump_clock: MockClock, api: Api) -> None:
    payment = await paid_payment(api)
    orders = await order_ids(api, payment)
    problem = await problem_of(await post_refund(api, {"order_id": orders["s1"]}, key=None), 400)
    assert problem["type"] == TYPE + "idempotency-key-missing"
    other = await post_refund(api, {"order_id": orders["s1"], "amount": "1.00"})
    assert other.status_code == 201
    reused = await post_refund(api, {"order_id": orders["s1"], "amount": "2.00"})
    assert (await problem_of(reused, 422))["type"] == TYPE + "idempotency-key-reused"
    assert len(await api.runtime.store.list_refunds(orders["s1"], 10)) == 1


async def test_merchant_keys_see_only_their_own_orders_refunds(
    autojump_clock: MockClock, api: Api
) -> None:
    payment = await paid_payment(api)
    orders = await order_ids(api, payment)
    s1, s2 = await api.merchant_key("s1"), await api.merchant_key("s2")
    r = await post_refund(api, {"order_id": orders["s1"], "amount": "1.00"}, as_key=s1)
    assert r.status_code == 201
    refund = json.loads(await r.get_data())
    # s2 may not refund, read or list s1's: they read as not found.
    theirs = await post_refund(api, {"order_id": orders["s1"]}, key="r9", as_key=s2)
    assert (await problem_of(theirs, 422))["type"] == TYPE + "refund-order-not-found"
    hidden = await api.client.get(f"/v1/refunds/{refund['id']}", headers=api.auth(s2))
    await problem_of(hidden, 404)
    listed = await api.client.get(f"/v1/refunds?order_id={orders['s1']}", headers=api.auth(s2))
    assert json.loads(await listed.get_data())["data"] == []
    own = await api.client.get(f"/v1/refunds/{refund['id']}", headers=api.auth(s1))
    assert json.loads(await own.get_data())["id"] == refund["id"]
    assert len(await api.runtime.store.list_refunds(orders["s1"], 10)) == 1
    missing = await api.client.get("/v1/refunds", headers=api.auth(api.admin))
    assert (await problem_of(missing, 422))["errors"][0]["pointer"] == "/order_id"


async def test_refund_over_real_http() -> None:
    """Over real sockets: Hypercorn serves our API and the fake PSP's face; the engine refunds
    through the HTTP Gateway and the PSP's signed refund webhook comes back over HTTP."""
    async with running_world() as (api_url, _, runtime, face), httpx.AsyncClient() as http:
        _, storefront = await create_api_key(
            runtime.store, runtime.ids, runtime.clock, "storefront"
        )
        auth = {"Authorization": f"Bearer {storefront}"}
        body = {
            "checkout_id": "e2e-refund",
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
        order_id = payment["orders"][0]["id"]
        bad = await http.post(
            f"{api_url}/v1/refunds",
            json={"order_id": order_id, "amount": 10},
            headers={**auth, "Idempotency-Key": "rf-1"},
        )
        assert bad.status_code == 422
        assert bad.headers["Content-Type"] == "application/problem+json"
        assert bad.json()["errors"][0]["pointer"] == "/amount"
        made = await http.post(
            f"{api_url}/v1/refunds",
            json={"order_id": order_id, "amount": "10.00"},
            headers={**auth, "Idempotency-Key": "rf-1"},
        )
        assert made.status_code == 201, made.text
        refund = made.json()
        with trio.fail_after(FLOW_TIMEOUT_S):
            while True:
                got = await http.get(f"{api_url}/v1/refunds/{refund['id']}", headers=auth)
                if got.json()["status"] == "succeeded":
                    break
                await trio.sleep(0.05)
            while not any(b"refund.succeeded" in sent for sent, _ in face.pump.sent):
                await trio.sleep(0.05)
        assert list(face.psp.refunds) == [refund["id"]]
        trial = await runtime.store.trial_balance()
        assert trial[("psp_clearing", "EUR")] == 4_000
        assert trial[("merchant_payable:s1", "EUR")] == -3_600
