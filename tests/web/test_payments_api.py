"""POST/GET /v1/payments through the Quart test client: validation, problems, idempotency."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from engine.records import IdempotencyRecord
from tests.web.conftest import Api, open_api, settings

PROBLEM = "application/problem+json"


def body(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "checkout_id": "co-1",
        "buyer": "buyer-1",
        "currency": "EUR",
        "orders": [{"seller_id": "s1", "amount": "12.34"}, {"seller_id": "s2", "amount": "5"}],
        "return_url": "https://shop.example/back",
    }
    base.update(overrides)
    return base


async def create(api: Api, payload: Any, key: str | None = "k1", **kw: Any) -> Any:
    headers = api.auth(api.storefront)
    if key is not None:
        headers["Idempotency-Key"] = key
    if isinstance(payload, bytes | str):
        headers["Content-Type"] = "application/json"
        return await api.client.post("/v1/payments", data=payload, headers=headers, **kw)
    return await api.client.post("/v1/payments", json=payload, headers=headers, **kw)


async def problem_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, await response.get_data()
    assert response.headers["Content-Type"] == PROBLEM
    problem: dict[str, Any] = json.loads(await response.get_data())
    assert {"type", "title", "status", "detail"} <= problem.keys()
    assert problem["status"] == status
    return problem


async def nothing_written(api: Api) -> None:
    assert await api.runtime.store.list_payments(10) == []


async def test_create_returns_payment_orders_and_hosted_url(
    autojump_clock: MockClock, api: Api
) -> None:
    r = await create(api, body())
    assert r.status_code == 201
    payment = json.loads(await r.get_data())
    assert payment["amount"] == "17.34" and payment["currency"] == "EUR"
    assert payment["status"] == "awaiting_payment"
    assert payment["hosted_url"].startswith("https://")
    assert [(o["seller_id"], o["amount"]) for o in payment["orders"]] == [
        ("s1", "12.34"),
        ("s2", "5.00"),
    ]
    assert r.headers["Location"] == f"/v1/payments/{payment['id']}"
    got = await api.client.get(f"/v1/payments/{payment['id']}", headers=api.auth(api.storefront))
    assert json.loads(await got.get_data())["id"] == payment["id"]


@pytest.mark.parametrize(
    ("payload", "status", "pointer"),
    [
        (body(orders=[{"seller_id": "s1", "amount": 12.34}]), 422, "/orders/0/amount"),
        (body(orders=[{"seller_id": "s1", "amount": 1234}]), 422, "/orders/0/amount"),
        (body(currency="XYZ"), 422, "/currency"),
        (body(orders=[{"seller_id": "s1", "amount": "1.234"}]), 422, "/orders/0/amount"),
        (body(orders=[]), 422, "/orders"),
        (
            body(orders=[{"seller_id": "s1", "amount": "1.00", "currency": "USD"}]),
            422,
            "/orders/0/currency",
        ),
        (body(colour="red"), 422, ""),
        (b'{"checkout_id": ', 400, None),
        (b"", 400, None),
    ],
    ids=[
        "float",
        "json-int",
        "unknown-currency",
        "too-many-decimals",
        "empty-cart",
        "currency-mismatch",
        "unknown-field",
        "malformed",
        "empty-body",
    ],
)
async def test_bad_bodies_are_4xx_problems_and_write_nothing(
    autojump_clock: MockClock, api: Api, payload: Any, status: int, pointer: str | None
) -> None:
    problem = await problem_of(await create(api, payload), status)
    if pointer:
        assert problem["errors"][0]["pointer"] == pointer
    await nothing_written(api)
    # The key was not consumed: the corrected request succeeds with it.
    assert (await create(api, body())).status_code == 201


async def test_body_over_the_size_limit_is_413(autojump_clock: MockClock) -> None:
    async with open_api(settings(body_size_max_bytes=256)) as api:
        big = body(return_url="https://shop.example/" + "a" * 400)
        await problem_of(await create(api, big), 413)
        await nothing_written(api)


async def test_duplicate_seller_and_zero_amount_are_422(
    autojump_clock: MockClock, api: Api
) -> None:
    dup = body(orders=[{"seller_id": "s1", "amount": "1"}, {"seller_id": "s1", "amount": "2"}])
    await problem_of(await create(api, dup), 422)
    zero = body(orders=[{"seller_id": "s1", "amount": "0"}])
    await problem_of(await create(api, zero, key="k2"), 422)
    await nothing_written(api)


async def test_missing_idempotency_key_is_400(autojump_clock: MockClock, api: Api) -> None:
    problem = await problem_of(await create(api, body(), key=None), 400)
    assert problem["type"].endswith("idempotency-key-missing")
    await nothing_written(api)


async def test_same_key_same_body_replays_byte_for_byte(
    autojump_clock: MockClock, api: Api
) -> None:
    first = await create(api, body())
    second = await create(api, body())
    assert second.status_code == first.status_code == 201
    assert await second.get_data() == await first.get_data()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.headers["Location"] == first.headers["Location"]
    assert len(await api.runtime.store.list_payments(10)) == 1


async def test_same_key_different_body_is_422(autojump_clock: MockClock, api: Api) -> None:
    assert (await create(api, body())).status_code == 201
    problem = await problem_of(await create(api, body(buyer="someone-else")), 422)
    assert problem["type"].endswith("idempotency-key-reused")


async def test_same_key_in_flight_is_409(autojump_clock: MockClock, api: Api) -> None:
    raw = json.dumps(body()).encode()
    from web.idempotency import fingerprint

    scope = (await api.runtime.store.get_api_key(_hash(api.storefront))).key_id  # type: ignore[union-attr]
    now_ms = api.runtime.clock.now_ms()
    async with api.runtime.store.unit_of_work() as uow:
        await uow.begin_idempotent(
            IdempotencyRecord(scope, "k1", fingerprint("POST", "/v1/payments", raw), now_ms)
        )
    problem = await problem_of(await create(api, raw), 409)
    assert problem["type"].endswith("idempotency-key-in-flight")
    await nothing_written(api)


async def test_abandoned_in_flight_claim_is_taken_over(autojump_clock: MockClock, api: Api) -> None:
    raw = json.dumps(body()).encode()
    from web.idempotency import fingerprint

    scope = (await api.runtime.store.get_api_key(_hash(api.storefront))).key_id  # type: ignore[union-attr]
    async with api.runtime.store.unit_of_work() as uow:
        await uow.begin_idempotent(
            IdempotencyRecord(
                scope, "k1", fingerprint("POST", "/v1/payments", raw), api.runtime.clock.now_ms()
            )
        )
    await trio.sleep(api.runtime.settings.idempotency_in_flight_timeout_s + 1)
    assert (await create(api, raw)).status_code == 201


async def test_keys_are_scoped_per_api_key(autojump_clock: MockClock, api: Api) -> None:
    from web.keys import create_api_key

    _, other = await create_api_key(
        api.runtime.store, api.runtime.ids, api.runtime.clock, "storefront"
    )
    assert (await create(api, body())).status_code == 201
    headers = api.auth(other, **{"Idempotency-Key": "k1"})
    r = await api.client.post(
        "/v1/payments", json=body(buyer="b2", checkout_id="co-2"), headers=headers
    )
    assert r.status_code == 201  # same key text, other API key: a new request


async def test_same_checkout_id_with_new_key_returns_the_existing_payment(
    autojump_clock: MockClock, api: Api
) -> None:
    first = json.loads(await (await create(api, body())).get_data())
    again = await create(api, body(), key="k2")
    assert again.status_code == 200
    assert json.loads(await again.get_data())["id"] == first["id"]
    reused = await create(api, body(buyer="other"), key="k3")
    await problem_of(reused, 409)


async def test_list_pages_newest_first(autojump_clock: MockClock, api: Api) -> None:
    ids = []
    for n in range(5):
        r = await create(api, body(checkout_id=f"co-{n}"), key=f"k{n}")
        ids.append(json.loads(await r.get_data())["id"])
        await trio.sleep(0.01)
    auth = api.auth(api.storefront)
    page = json.loads(await (await api.client.get("/v1/payments?limit=2", headers=auth)).get_data())
    assert [p["id"] for p in page["data"]] == ids[::-1][:2] and page["has_more"]
    rest = await api.client.get(
        f"/v1/payments?limit=10&starting_after={page['data'][-1]['id']}", headers=auth
    )
    rest_page = json.loads(await rest.get_data())
    assert [p["id"] for p in rest_page["data"]] == ids[::-1][2:] and not rest_page["has_more"]
    await problem_of(await api.client.get("/v1/payments?limit=0", headers=auth), 422)
    await problem_of(await api.client.get("/v1/payments?limit=x", headers=auth), 422)


async def test_unknown_payment_is_404_problem(autojump_clock: MockClock, api: Api) -> None:
    r = await api.client.get("/v1/payments/pay_nope", headers=api.auth(api.storefront))
    await problem_of(r, 404)


async def test_unknown_route_and_method_are_problems(autojump_clock: MockClock, api: Api) -> None:
    await problem_of(await api.client.get("/v1/nothing-here"), 404)
    await problem_of(await api.client.delete("/v1/payments", headers=api.auth(api.admin)), 405)


def _hash(text: str) -> str:
    from engine.access import hash_key

    return hash_key(text)
