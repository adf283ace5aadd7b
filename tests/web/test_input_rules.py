"""Inputs that were wrongly accepted (issue 13.5) are refused before anything is written:
return URLs with CR/LF or without a host, bodies without a JSON Content-Type, seller and
merchant ids holding ':', unknown query parameters; and a NUL in a webhook endpoint's URL."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from trio.testing import MockClock

from tests.web.conftest import Api
from tests.web.test_payments_api import body, create, nothing_written, problem_of
from web.bodies import is_json
from web.wire import URL_PATTERN, url_problem


@pytest.mark.parametrize(
    "url",
    [
        "https://shop.example/thanks\r\nSet-Cookie: x=1",
        "https://shop.example/thanks\n",
        "http://",
        "https://",
        "https:///path",
        "ftp://shop.example/",
        "javascript:alert(1)",
        "https://shop example/",
        "https://user@shop.example/",
        "https://shop.example/\x7f",
    ],
)
async def test_a_return_url_must_be_http_with_a_host_and_no_control_characters(
    autojump_clock: MockClock, api: Api, url: str
) -> None:
    problem = await problem_of(await create(api, body(return_url=url)), 422)
    assert problem["errors"][0]["pointer"] == "/return_url"
    await nothing_written(api)


async def test_good_return_urls_pass(autojump_clock: MockClock, api: Api) -> None:
    for number, url in enumerate(
        ["https://shop.example/thanks?o=1#top", "http://127.0.0.1:8080/", "https://[::1]/x"]
    ):
        response = await create(api, body(checkout_id=f"c-{number}", return_url=url), f"k{number}")
        assert response.status_code == 201, await response.get_data()


async def test_a_post_without_content_type_is_415(autojump_clock: MockClock, api: Api) -> None:
    headers = {**api.auth(api.storefront), "Idempotency-Key": "k1"}
    response = await api.client.post(
        "/v1/payments", data=json.dumps(body()).encode(), headers=headers
    )
    await problem_of(response, 415)
    response = await api.client.post(
        "/v1/payments",
        data=json.dumps(body()).encode(),
        headers={**headers, "Content-Type": "text/plain"},
    )
    await problem_of(response, 415)
    await nothing_written(api)


@pytest.mark.parametrize(
    ("content_type", "accepted"),
    [
        ("application/json", True),
        ("Application/JSON; charset=utf-8", True),
        ("application/merge-patch+json", True),
        (None, False),
        ("", False),
        ("text/json", False),
        ("application/jsonp", False),
        ("application/x-www-form-urlencoded", False),
    ],
)
def test_is_json(content_type: str | None, accepted: bool) -> None:
    assert is_json(content_type) is accepted


async def test_a_seller_id_may_not_hold_the_account_separator(
    autojump_clock: MockClock, api: Api
) -> None:
    orders = [{"seller_id": "shop:evil", "amount": "1.00"}]
    problem = await problem_of(await create(api, body(orders=orders)), 422)
    assert problem["errors"][0]["pointer"] == "/orders/0/seller_id"
    await nothing_written(api)


async def test_a_merchant_id_with_a_colon_is_422(autojump_clock: MockClock, api: Api) -> None:
    admin = api.auth(api.admin)
    response = await api.client.get("/v1/merchants/a:b/balance", headers=admin)
    await problem_of(response, 422)
    response = await api.client.post(
        "/v1/merchants/a:b/webhook-endpoints",
        json={"url": "https://m.example/hooks"},
        headers={**admin, "Idempotency-Key": "w1"},
    )
    await problem_of(response, 422)
    assert await api.runtime.store.get_webhook_endpoint("a:b") is None


async def test_a_nul_in_a_webhook_endpoint_url_is_422_and_nothing_is_stored(
    autojump_clock: MockClock, api: Api
) -> None:
    admin = {**api.auth(api.admin), "Idempotency-Key": "w1"}
    response = await api.client.post(
        "/v1/merchants/m-1/webhook-endpoints",
        json={"url": "https://m.example/\u0000hooks"},
        headers=admin,
    )
    problem = await problem_of(response, 422)
    assert problem["errors"][0]["pointer"] == "/url"
    assert await api.runtime.store.get_webhook_endpoint("m-1") is None


async def test_an_unknown_query_parameter_is_422(autojump_clock: MockClock, api: Api) -> None:
    response = await api.client.get("/v1/payments?limt=5", headers=api.auth(api.storefront))
    problem = await problem_of(response, 422)
    assert problem["errors"][0]["pointer"] == "/limt"
    ok = await api.client.get("/v1/payments?limit=5", headers=api.auth(api.storefront))
    assert ok.status_code == 200


@given(st.from_regex(URL_PATTERN))
def test_every_url_the_schema_allows_is_accepted_unless_python_dollar_let_a_newline_in(
    url: str,
) -> None:
    broken = url_problem(url, "/url")
    assert (broken is None) == ("\n" not in url)
