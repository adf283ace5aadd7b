"""No 5xx from any string (issue 13): arbitrary strings (NUL, lone surrogates, RTL and other
format marks, line breaks, 10 kB) in every path parameter, query parameter and body string
field, over real HTTP (Hypercorn) against PostgreSQL, which is what refuses a NUL. Every answer
is 2xx or a 4xx problem+json, and a refused request writes nothing.

Bounded for CI by `EXAMPLES`; `PAYENGINE_BOUNDARY_EXAMPLES=2000` runs more.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests import pgfixtures
from tests.web.liveserver import LiveServer, running_server
from web.boundary import first_unstorable, storable
from web.problems import PROBLEM_CONTENT_TYPE

pytestmark = pytest.mark.postgres

EXAMPLES = int(os.environ.get("PAYENGINE_BOUNDARY_EXAMPLES", "100"))
REQUEST_TIMEOUT_S = 30.0
#: What a request can write; engine work in the background (outbox, PSP registration of an
#: accepted payment) writes elsewhere or updates rows, so these are counted or hashed.
WRITTEN_TABLES = (
    "payments",
    "payment_orders",
    "idempotency",
    "api_keys",
    "ledger_transactions",
    "refunds",
)
IDEMPOTENCY = WRITTEN_TABLES.index("idempotency")

NASTY = st.sampled_from(
    [
        "",
        "\x00",
        "pay_\x00",
        "\ud800",
        "a\udfffb",
        "\u202e\u202d",
        "\u200f\u2066x\u2069",
        "\ufeff",
        "\r\n",
        "\u0085\u2028",
        "x" * 10_000,
        "é" * 5_000,
        ":",
        "/",
        "..",
        "%00",
        "𝄞",
        "\x7f",
    ]
)
STRINGS = st.one_of(
    NASTY,
    st.text(st.characters(exclude_categories=()), max_size=40),
    st.tuples(st.text(max_size=8), NASTY, st.text(max_size=8)).map("".join),
)

PAYMENT: dict[str, Any] = {
    "checkout_id": "c-1",
    "buyer": "b-1",
    "currency": "EUR",
    "orders": [{"seller_id": "s-1", "amount": "12.50", "currency": "EUR"}],
    "return_url": "https://shop.example/thanks",
}
PATHS = (
    ("GET", "/v1/payments/{}", "storefront"),
    ("GET", "/v1/ledger/transactions/{}", "admin"),
    ("GET", "/v1/ledger/accounts/{}/entries", "admin"),
    ("GET", "/v1/ledger/accounts/merchant_payable:{}/entries", "admin"),
    ("GET", "/v1/merchants/{}/balance", "admin"),
    ("GET", "/v1/merchants/{}/webhook-endpoints", "admin"),
    ("POST", "/v1/merchants/{}/webhook-endpoints", "admin"),
    ("POST", "/v1/dead-letters/{}/replay", "admin"),
    ("GET", "/v1/refunds/{}", "admin"),
)
QUERIES = (
    ("/v1/payments", "starting_after", "storefront"),
    ("/v1/payments", "limit", "storefront"),
    ("/v1/ledger/accounts/psp_clearing/entries", "starting_after", "admin"),
    ("/v1/ledger/accounts/psp_clearing/entries", "limit", "admin"),
    ("/v1/dead-letters", "limit", "admin"),
    ("/v1/refunds", "order_id", "admin"),
    ("/v1/refunds?order_id=ord_1", "starting_after", "admin"),
    ("/v1/refunds?order_id=ord_1", "limit", "admin"),
)
FIELDS = (
    ("/checkout_id",),
    ("/buyer",),
    ("/currency",),
    ("/orders/0/seller_id",),
    ("/orders/0/amount",),
    ("/orders/0/currency",),
    ("/return_url",),
    ("/url",),  # the merchant webhook endpoint's
    ("refund", "/order_id"),  # POST /v1/refunds
    ("refund", "/amount"),
    ("refund", "/currency"),
    ("refund", "/reason"),
)
REFUND: dict[str, Any] = {"order_id": "ord_1", "amount": "1.00", "reason": "returned"}


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[LiveServer, str]]:
    dsn, name = pgfixtures.create_database_sync("embedded")
    try:
        with running_server(dsn) as server:
            yield server, dsn
    finally:
        pgfixtures.drop_database_sync("embedded", name)


def _snapshot(dsn: str) -> tuple[Any, ...]:
    async def read() -> tuple[Any, ...]:
        conn = await asyncpg.connect(dsn)
        try:
            counts = [await conn.fetchval(f"SELECT count(*) FROM {t}") for t in WRITTEN_TABLES]
            endpoints = await conn.fetchval(
                "SELECT md5(coalesce(string_agg(e::text, ',' ORDER BY e::text), ''))"
                " FROM webhook_endpoints e"
            )
            return (*counts, endpoints)
        finally:
            await conn.close()

    def run() -> tuple[Any, ...]:
        with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
            return runner.run(read())

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


def _segment(text: str) -> str:
    """`text` as one percent-encoded path segment or query value (surrogates as their bytes)."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def _request(server: LiveServer, target: tuple[Any, ...], text: str) -> httpx.Request:
    kind = target[0]
    headers = {"Idempotency-Key": str(uuid.uuid4()), "Content-Type": "application/json"}
    if kind == "path":
        _, method, template, scope = target
        url = server.url + template.format(_segment(text))
        body = json.dumps({"url": "https://m.example/hooks"}) if method == "POST" else None
    elif kind == "query":
        _, path, name, scope = target
        joiner = "&" if "?" in path else "?"
        url, method, body = f"{server.url}{path}{joiner}{name}={_segment(text)}", "GET", None
    else:
        _, field = target
        pointer = field[-1]
        if field[0] == "refund":
            url, scope = f"{server.url}/v1/refunds", "admin"
            document = {**REFUND, pointer.strip("/"): text}
        elif pointer == "/url":
            url, scope = f"{server.url}/v1/merchants/m-1/webhook-endpoints", "admin"
            document: Any = {"url": text}
        else:
            url, scope = f"{server.url}/v1/payments", "storefront"
            document = json.loads(json.dumps(PAYMENT))
            *parents, leaf = pointer.strip("/").split("/")
            node = document
            for part in parents:
                node = node[int(part)] if part.isdigit() else node[part]
            node[leaf] = text
        method = "POST"
        body = json.dumps(document)  # ensure_ascii: surrogates travel as \\ud800 escapes
    headers["Authorization"] = f"Bearer {server.keys[scope]}"
    return httpx.Request(method, httpx.URL(url), headers=headers, content=body)


TARGETS = st.one_of(
    st.sampled_from(PATHS).map(lambda p: ("path", *p)),
    st.sampled_from(QUERIES).map(lambda q: ("query", *q)),
    st.sampled_from(FIELDS).map(lambda f: ("body", f)),
)


def test_storable_refuses_exactly_nul_and_lone_surrogates() -> None:
    assert storable("pay_01\u202e é 𝄞")
    assert not storable("a\x00b") and not storable("\ud800")
    assert first_unstorable({"a": [1, {"b/c": "x\x00"}]}) == "/a/1/b~1c"
    assert first_unstorable({"a\x00": 1}) == "/a\x00"
    assert first_unstorable(["fine", 3, None]) is None


def test_any_string_anywhere_is_answered_2xx_or_4xx_problem_and_refusals_write_nothing(
    live: tuple[LiveServer, str],
) -> None:
    server, dsn = live

    @given(target=TARGETS, text=STRINGS)
    @example(target=("path", *PATHS[0]), text="\x00")
    @example(target=("path", *PATHS[4]), text="é" * 5_000)
    @example(target=("query", *QUERIES[0]), text="\x00")
    @example(target=("query", *QUERIES[1]), text="²")
    @example(target=("body", FIELDS[3]), text="a\x00")
    @example(target=("body", FIELDS[6]), text="https://shop.example/\r\nX: y")
    @example(target=("body", FIELDS[7]), text="http://")
    @example(target=("body", FIELDS[1]), text="buyer-a")  # with the next: one creates c-1,
    @example(target=("body", FIELDS[1]), text="buyer-b")  # the other is a stored 409
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def check(target: tuple[Any, ...], text: str) -> None:
        request = _request(server, target, text)
        before = _snapshot(dsn)
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
            response = client.send(request)
        assert response.status_code < 500, (target, text[:80], response.text[:300])
        media = response.headers.get("content-type", "")
        if response.status_code >= 400:
            assert media == PROBLEM_CONTENT_TYPE, (target, response.status_code, media)
            assert response.json()["status"] == response.status_code
            after = _snapshot(dsn)
            if after[IDEMPOTENCY] != before[IDEMPOTENCY]:
                # The endpoint's own answer (409 checkout_id_reused) is stored for the key
                # and replayed, as documented; anything refused before it writes nothing.
                assert after[IDEMPOTENCY] == before[IDEMPOTENCY] + 1
                with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
                    replay = client.send(request)
                assert replay.headers.get("Idempotent-Replayed") == "true", replay.text[:300]
                assert replay.status_code == response.status_code
                after = _snapshot(dsn)
                before = (*before[:IDEMPOTENCY], after[IDEMPOTENCY], *before[IDEMPOTENCY + 1 :])
            assert after == before, (target, text[:80], response.text[:300])
        else:
            assert media == "application/json", (target, media)

    check()
