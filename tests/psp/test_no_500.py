"""Whatever a client sends, the fake PSP answers a Stripe error object or a success, never a 500:
valid requests with any field broken or dropped, and arbitrary form bodies, on every endpoint.
A refused session creates nothing. Through Quart's test client (no sockets), so hypothesis can
try many requests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from quart.typing import TestClientProtocol as Client
from stripe._encode import _api_encode

from psp.app import DEFAULT_API_KEY, PSP_EXTENSION, PspFace, PspFaceSettings, create_psp_app
from tests.psp.test_stripe_library import session_params

HEADERS = {
    "Authorization": f"Bearer {DEFAULT_API_KEY}",
    "Content-Type": "application/x-www-form-urlencoded",
}
#: Values a broken field may take: wrong types, signs, cases, sizes, encodings.
ODD = st.one_of(
    st.sampled_from(["", "-5", "0", "12.5", "1e3", "EUR", "eur", "xyz", "true", "99999999999"]),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.text(max_size=12),
    st.lists(st.text(max_size=4), max_size=2),
    st.dictionaries(st.text("abc[]", max_size=3), st.text(max_size=3), max_size=2),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _paths(v, (*prefix, k))] or [prefix]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _paths(v, (*prefix, i))] or [prefix]
    return [prefix]


def _broken(path: tuple[Any, ...], value: Any, drop: bool) -> dict[str, Any]:
    params = session_params()
    node: Any = params
    for step in path[:-1]:
        node = node[step]
    if drop:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return params


PATHS = _paths(session_params())


@asynccontextmanager
async def face_client() -> AsyncIterator[tuple[Client, PspFace]]:
    app = create_psp_app(PspFaceSettings("http://psp.test", None, ("whsec_x",)))
    async with app.test_app() as test_app:
        yield test_app.test_client(), app.extensions[PSP_EXTENSION]


def _assert_stripe_shaped(status: int, body: Any) -> None:
    assert status < 500, body
    if status >= 400:
        error = body["error"]
        assert error["type"] in {"invalid_request_error", "idempotency_error", "card_error"}
        assert isinstance(error["message"], str) and error["message"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(PATHS), value=ODD, drop=st.booleans())
async def test_a_session_with_any_field_broken_is_created_or_refused_never_a_500(
    path: tuple[Any, ...], value: Any, drop: bool
) -> None:
    async with face_client() as (client, face):
        body = urlencode(list(_api_encode(_broken(path, value, drop))))
        answer = await client.post("/v1/checkout/sessions", data=body, headers=HEADERS)
        data = await answer.get_json()
        _assert_stripe_shaped(answer.status_code, data)
        assert len(face.psp.sessions) == (1 if answer.status_code == 200 else 0)


ENDPOINTS = st.sampled_from(
    [
        ("POST", "/v1/checkout/sessions"),
        ("POST", "/v1/checkout/sessions/cs_x/expire"),
        ("GET", "/v1/checkout/sessions/cs_x"),
        ("POST", "/v1/payment_intents/pi_x/capture"),
        ("GET", "/v1/payment_intents/search"),
        ("GET", "/v1/charges"),
        ("POST", "/v1/refunds"),
        ("GET", "/v1/refunds"),
        ("GET", "/v1/refunds/re_x"),
    ]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    endpoint=ENDPOINTS,
    pairs=st.lists(st.tuples(st.text(max_size=12), st.text(max_size=12)), max_size=6),
)
async def test_any_form_on_any_endpoint_is_a_stripe_answer(
    endpoint: tuple[str, str], pairs: list[tuple[str, str]]
) -> None:
    method, path = endpoint
    async with face_client() as (client, _):
        encoded = urlencode(pairs)
        if method == "GET":
            answer = await client.get(f"{path}?{encoded}", headers=HEADERS)
        else:
            answer = await client.post(path, data=encoded, headers=HEADERS)
        _assert_stripe_shaped(answer.status_code, await answer.get_json())
