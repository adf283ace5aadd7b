"""POST/GET /v1/refunds through the Quart test client: each bad input's exact problem+json
(and that it wrote nothing), Idempotency-Key, merchant keys limited to their own orders.

Our API's refunds; the fake PSP's own /v1/refunds is tests/web/test_refunds_http.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from engine.states import OrderStatus
from tests.web.conftest import Api
from tests.web.test_access_and_webhooks import deliver_all, paid_payment
from tests.web.test_payments_api import problem_of

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
    from tests.web.test_payments_api import body, create

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
