"""Every refusal of the fake PSP is Stripe's error object with Stripe's status code, and changes
nothing: bad amounts and currencies, unknown sessions, missing or wrong API keys, capturing what
cannot be captured, JSON instead of a form, an unknown URL. Never a 500, never an HTML page."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import stripe
from stripe._encode import _api_encode

from psp.app import DEFAULT_API_KEY
from tests.psp.running import running_psp
from tests.psp.test_stripe_library import session_params

AUTH = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}


def _with_price(**price: Any) -> dict[str, Any]:
    params = session_params()
    params["line_items"][0]["price_data"].update(price)
    return params


def _without_amount() -> dict[str, Any]:
    params = session_params()
    del params["line_items"][0]["price_data"]["unit_amount"]
    return params


#: (what is wrong, parameters, status, param named, code)
BAD_SESSIONS = [
    ("no line items", {"mode": "payment"}, 400, "line_items", "parameter_missing"),
    (
        "no amount",
        _without_amount(),
        400,
        "line_items[0][price_data][unit_amount]",
        "parameter_missing",
    ),
    (
        "decimal amount",
        _with_price(unit_amount="12.5"),
        400,
        "line_items[0][price_data][unit_amount]",
        "parameter_invalid_integer",
    ),
    (
        "negative amount",
        _with_price(unit_amount=-5),
        400,
        "line_items[0][price_data][unit_amount]",
        "parameter_invalid_integer",
    ),
    (
        "zero amount",
        _with_price(unit_amount=0),
        400,
        "line_items[0][price_data][unit_amount]",
        "parameter_invalid_integer",
    ),
    (
        "unknown currency",
        _with_price(currency="xyz"),
        400,
        "line_items[0][price_data][currency]",
        None,
    ),
    (
        "not a currency",
        _with_price(currency="euro"),
        400,
        "line_items[0][price_data][currency]",
        "parameter_invalid_string",
    ),
    (
        "automatic capture",
        {**session_params(), "payment_intent_data": {"capture_method": "automatic"}},
        400,
        "payment_intent_data[capture_method]",
        None,
    ),
    ("subscription mode", {**session_params(), "mode": "subscription"}, 400, "mode", None),
]


@pytest.mark.parametrize(
    ("params", "status", "param", "code"),
    [case[1:] for case in BAD_SESSIONS],
    ids=[case[0] for case in BAD_SESSIONS],
)
async def test_bad_session_is_a_stripe_error_and_creates_nothing(
    params: dict[str, Any], status: int, param: str, code: str | None
) -> None:
    async with running_psp() as psp, httpx.AsyncClient() as http:
        answer = await http.post(
            f"{psp.url}/v1/checkout/sessions",
            content=urlencode(list(_api_encode(params))),
            headers={
                **AUTH,
                "Content-Type": "application/x-www-form-urlencoded",
                "Idempotency-Key": "bad-1",
            },
        )
        assert answer.status_code == status
        assert answer.headers["content-type"] == "application/json"
        error = answer.json()["error"]
        assert error["type"] == "invalid_request_error" and error["message"]
        assert error["param"] == param and error.get("code") == code
        assert psp.face.psp.sessions == {}
        # The refusal was not saved under the key: the corrected request runs.
        fixed = await psp.client().v1.checkout.sessions.create_async(
            session_params(), {"idempotency_key": "bad-1"}
        )
        assert fixed.status == "open" and len(psp.face.psp.sessions) == 1


async def test_the_stripe_library_raises_stripe_errors_for_refusals() -> None:
    async with running_psp() as psp:
        v1 = psp.client().v1
        with pytest.raises(stripe.InvalidRequestError) as unknown:
            await v1.checkout.sessions.retrieve_async("cs_nope")
        assert (unknown.value.http_status, unknown.value.code) == (404, "resource_missing")
        assert "No such checkout.session: 'cs_nope'" in str(unknown.value)
        with pytest.raises(stripe.InvalidRequestError) as no_intent:
            await v1.payment_intents.capture_async("pi_nope")
        assert no_intent.value.http_status == 404
        with pytest.raises(stripe.InvalidRequestError) as expire_unknown:
            await v1.checkout.sessions.expire_async("cs_nope")
        assert expire_unknown.value.http_status == 404

        session = await v1.checkout.sessions.create_async(session_params())
        pi = session.payment_intent
        # Capturing before the buyer paid: Stripe's 400, recorded as a declined capture.
        with pytest.raises(stripe.InvalidRequestError) as early:
            await v1.payment_intents.capture_async(pi, {"amount_to_capture": 100})
        assert early.value.code == "payment_intent_unexpected_state"
        expired = await v1.checkout.sessions.expire_async(session.id)
        assert expired.status == "expired"
        with pytest.raises(stripe.InvalidRequestError) as twice:
            await v1.checkout.sessions.expire_async(session.id)
        assert twice.value.http_status == 400
        intent = await v1.payment_intents.retrieve_async(pi)
        assert (intent.status, intent.cancellation_reason) == ("canceled", "abandoned")
        assert psp.face.psp.captured_total() == {}

        with pytest.raises(stripe.AuthenticationError):
            await psp.client("sk_test_wrong").v1.checkout.sessions.create_async(session_params())
        assert len(psp.face.psp.sessions) == 1


async def test_raw_http_refusals_are_json_error_objects() -> None:
    async with running_psp() as psp, httpx.AsyncClient() as http:
        url = f"{psp.url}/v1/checkout/sessions"
        no_key = await http.post(url, data={"mode": "payment"})
        assert no_key.status_code == 401 and "API key" in no_key.json()["error"]["message"]
        as_json = await http.post(url, json={"amount_total": 500, "currency": "EUR"}, headers=AUTH)
        assert as_json.status_code == 400 and as_json.json()["error"]["param"] == "mode"
        nowhere = await http.get(f"{psp.url}/v1/customers", headers=AUTH)
        assert nowhere.status_code == 404
        assert (
            nowhere.json()["error"]["message"] == "Unrecognized request URL (GET: /v1/customers)."
        )
        bad_name = await http.post(url, content="mode]=x", headers=AUTH)
        assert bad_name.status_code == 400 and bad_name.json()["error"]["type"]
        assert psp.face.psp.sessions == {}
