"""`payengine serve` and `payengine demo` pay sellers as real processes (issue 11): the fake PSP
they start is also the payout provider, so `POST /v1/payouts` after a paid checkout ends PAID
over real HTTP (the engine's payout call to the PSP, the PSP's signed `payout.paid` back),
with the ledger balanced, instead of 503 payouts-unavailable; the demo's Money page has a
"Pay out" button that does the same."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from tests.web.test_serve_process import (
    EXIT_TIMEOUT_S,
    START_TIMEOUT_S,
    Process,
    _free_port,
    _keys,
    _payment_body,
    database_url,  # noqa: F401 - the fixture
)

pytestmark = pytest.mark.postgres


def _until(client: httpx.Client, path: str, headers: dict[str, str], done: Any) -> Any:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        got = client.get(path, headers=headers)
        assert got.status_code == 200, got.text
        if done(got.json()):
            return got.json()
        assert time.monotonic() < deadline, got.text
        time.sleep(0.1)


def _sell_and_pay_out(client: httpx.Client, keys: dict[str, str], checkout_id: str) -> None:
    storefront = {"Authorization": f"Bearer {keys['storefront']}"}
    admin = {"Authorization": f"Bearer {keys['admin']}"}
    created = client.post(
        "/v1/payments",
        json=_payment_body(checkout_id),
        headers={**storefront, "Idempotency-Key": checkout_id},
    )
    assert created.status_code == 201, created.text
    payment = created.json()
    paid = client.post(payment["hosted_url"], data={"card_number": "4242424242424242"})
    assert paid.status_code < 400, paid.text
    _until(client, f"/v1/payments/{payment['id']}", admin, lambda p: p["status"] == "completed")
    body = {"merchant_id": "seller-1", "amount": "10.00", "currency": "EUR"}
    made = client.post(
        "/v1/payouts", json=body, headers={**admin, "Idempotency-Key": f"po-{checkout_id}"}
    )
    assert made.status_code == 201, made.text
    payout = _until(
        client, f"/v1/payouts/{made.json()['id']}", admin, lambda p: p["status"] == "paid"
    )
    assert payout["provider_ref"].startswith("po_"), payout
    trial = client.get("/v1/ledger/trial-balance", headers=admin).json()
    assert trial["balanced"], trial


def test_serve_pays_a_seller_through_its_fake_psp(database_url: str) -> None:  # noqa: F811
    port, psp_port = _free_port(), _free_port()
    argv = ["serve", "--port", str(port), "--psp-port", str(psp_port), "--print-keys"]
    process = Process(argv, database_url)
    try:
        keys = _keys(process)
        process.wait_for(f"payengine API on http://127.0.0.1:{port}")
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=EXIT_TIMEOUT_S) as client:
            _sell_and_pay_out(client, keys, "serve-payout")
        assert process.stop() == 0, "\n".join(process.lines)
    finally:
        process.kill()


def test_the_served_demo_pays_a_seller_over_http(database_url: str) -> None:  # noqa: F811
    port = _free_port()
    process = Process(["demo", "--port", str(port)], database_url)
    try:
        keys = {}
        for scope in ("storefront", "admin"):
            line = process.wait_for(f"     {scope} ")
            keys[scope] = line.split()[1]
        process.wait_for(f"payengine demo on http://127.0.0.1:{port}")
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=EXIT_TIMEOUT_S) as client:
            _sell_and_pay_out(client, keys, "demo-payout")
            # The Money page's "Pay out" button pays what is left (1.25 EUR), over HTTP too.
            page = client.get("/money").text
            form = re.search(
                r'name="merchant_id" value="seller-1">'
                r'<input type="hidden" name="currency" value="EUR">'
                r'<input type="hidden" name="key" value="([^"]+)"',
                page,
            )
            assert form is not None, page
            fields = {"merchant_id": "seller-1", "currency": "EUR", "key": form.group(1)}
            for _ in range(2):  # a double click is one payout
                clicked = client.post("/money/payout", data=fields)
                assert clicked.status_code == 303, clicked.text
            admin = {"Authorization": f"Bearer {keys['admin']}"}
            listed = _until(
                client,
                "/v1/merchants/seller-1/payouts",
                admin,
                lambda page: (
                    len(page["data"]) == 2 and all(p["status"] == "paid" for p in page["data"])
                ),
            )
            assert sorted(p["amount"] for p in listed["data"]) == ["1.25", "10.00"]
        assert process.stop() == 0, "\n".join(process.lines)
    finally:
        process.kill()


def test_serve_pays_through_a_separate_psp_serve_process(database_url: str) -> None:  # noqa: F811
    """`payengine serve --psp-url` at a `payengine psp serve` process: the payout goes to that
    PSP with its API key, and its signed `payout.paid` comes back to the API."""
    port, psp_port = _free_port(), _free_port()
    api_key, secret = "sk_test_payouts_process", "whsec_payouts_process"
    psp = Process(
        [
            "psp",
            "serve",
            "--port",
            str(psp_port),
            "--api-key",
            api_key,
            "--webhook-url",
            f"http://127.0.0.1:{port}/v1/psp/webhooks",
            "--webhook-secret",
            secret,
        ],
        database_url,
    )
    api = None
    try:
        psp.wait_for(f"fake PSP (Stripe API) on http://127.0.0.1:{psp_port}")
        api = Process(
            [
                "serve",
                "--port",
                str(port),
                "--psp-url",
                f"http://127.0.0.1:{psp_port}",
                "--psp-api-key",
                api_key,
                "--webhook-secret",
                secret,
                "--print-keys",
            ],
            database_url,
        )
        keys = _keys(api)
        api.wait_for(f"payengine API on http://127.0.0.1:{port}")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=EXIT_TIMEOUT_S) as client:
            _sell_and_pay_out(client, keys, "psp-process-payout")
        assert api.stop() == 0, "\n".join(api.lines)
        assert psp.stop() == 0, "\n".join(psp.lines)
    finally:
        if api is not None:
            api.kill()
        psp.kill()
