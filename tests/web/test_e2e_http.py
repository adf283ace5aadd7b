"""End to end over real sockets: Hypercorn serving the API and the fake PSP's HTTP face, the
engine reaching the PSP through the HTTP Gateway, the PSP posting signed webhooks back; from
POST /v1/payments to a booked ledger, with a duplicated and a forged webhook on the way.
Also: the official `stripe` library accepts the fake PSP's signatures.
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import stripe
import trio
from hypercorn.trio import serve

from engine.limits import EngineConfig
from engine.store.memory import MemoryStore
from payengine.serve import hypercorn_config
from psp.app import PSP_EXTENSION, PspFace, PspFaceSettings, create_psp_app
from tests.web.conftest import _yielding
from web.app import create_app
from web.http_gateway import open_http_gateway
from web.keys import create_api_key
from web.runtime import EXTENSION, Runtime, Wiring
from web.settings import WebSettings
from web.signature import sign_header

SECRET = "whsec_e2e"
#: Real time: the whole flow should take well under a second; this bounds a hang.
FLOW_TIMEOUT_S = 30.0


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


@asynccontextmanager
async def running_world(
    payout_gateway: Any = None,
) -> AsyncIterator[tuple[str, str, Runtime, PspFace]]:
    """Our API and the fake PSP's face on real sockets: (api url, psp url, runtime, face).
    `payout_gateway`: the engine's payout provider (tests/web/test_payouts_api.py)."""
    api_sock, psp_sock = _listening_socket(), _listening_socket()
    api_url = f"http://127.0.0.1:{api_sock.getsockname()[1]}"
    psp_url = f"http://127.0.0.1:{psp_sock.getsockname()[1]}"
    store = MemoryStore(checkpoint=trio.lowlevel.checkpoint)

    @asynccontextmanager
    async def open_store() -> AsyncIterator[Any]:
        yield store

    wiring = Wiring(
        open_store=open_store,
        open_gateway=lambda clock: open_http_gateway(psp_url),
        engine_config=EngineConfig(outbox_poll_interval_s=0.05),
        open_payout_gateway=None if payout_gateway is None else _yielding(payout_gateway),
    )
    api = create_app(wiring, WebSettings(psp_webhook_secrets=(SECRET,), public_base_url=api_url))
    psp = create_psp_app(PspFaceSettings(psp_url, f"{api_url}/v1/psp/webhooks", (SECRET,)))
    stop = trio.Event()

    async def trigger() -> None:
        await stop.wait()

    async with trio.open_nursery() as nursery:
        for app, sock in ((psp, psp_sock), (api, api_sock)):
            config = hypercorn_config(
                [f"fd://{sock.detach()}"], graceful_timeout_s=0.5
            )  # Hypercorn owns it now
            nursery.start_soon(lambda a=app, c=config: serve(a, c, shutdown_trigger=trigger))
        async with httpx.AsyncClient() as probe:
            with trio.fail_after(FLOW_TIMEOUT_S):
                while True:
                    try:
                        if (await probe.get(f"{api_url}/readyz")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    await trio.sleep(0.05)
        try:
            yield api_url, psp_url, api.extensions[EXTENSION], psp.extensions[PSP_EXTENSION]
        finally:
            stop.set()


async def test_checkout_to_booked_ledger_over_real_http() -> None:
    async with running_world() as (api_url, _, runtime, face), httpx.AsyncClient() as http:
        _, storefront = await create_api_key(
            runtime.store, runtime.ids, runtime.clock, "storefront"
        )
        _, admin = await create_api_key(runtime.store, runtime.ids, runtime.clock, "admin")
        body = {
            "checkout_id": "e2e-1",
            "buyer": "buyer-1",
            "currency": "EUR",
            "orders": [
                {"seller_id": "s1", "amount": "30.00"},
                {"seller_id": "s2", "amount": "20.00"},
            ],
            "return_url": "https://shop.example/done",
        }
        headers = {"Authorization": f"Bearer {storefront}", "Idempotency-Key": "e2e-k1"}
        created = await http.post(f"{api_url}/v1/payments", json=body, headers=headers)
        assert created.status_code == 201, created.text
        payment = created.json()
        assert payment["hosted_url"].startswith("http://127.0.0.1:")

        # The buyer clicks through the hosted page with the test card that succeeds.
        page = await http.get(payment["hosted_url"])
        assert "Pay 50.00 EUR" in page.text
        paid = await http.post(payment["hosted_url"], data={"card_number": "4242 4242 4242 4242"})
        assert paid.status_code == 303

        admin_auth = {"Authorization": f"Bearer {admin}"}
        with trio.fail_after(FLOW_TIMEOUT_S):
            while True:
                got = await http.get(f"{api_url}/v1/payments/{payment['id']}", headers=admin_auth)
                if got.json()["status"] == "completed":
                    break
                await trio.sleep(0.05)
            while True:
                balance = await http.get(f"{api_url}/v1/merchants/s1/balance", headers=admin_auth)
                if balance.json()["balances"]:
                    break
                await trio.sleep(0.05)
        assert balance.json()["balances"][0]["available"] == "27.00"  # 10% commission

        # A duplicated webhook (re-signed now, as a PSP retry is) changes nothing.
        first_body, _ = face.pump.sent[0]
        trial_before = (
            await http.get(f"{api_url}/v1/ledger/trial-balance", headers=admin_auth)
        ).json()
        now_s = runtime.clock.now_ms() // 1000
        dup = await http.post(
            f"{api_url}/v1/psp/webhooks",
            content=first_body,
            headers={"Stripe-Signature": sign_header([SECRET], now_s, first_body)},
        )
        assert dup.status_code == 200 and dup.json()["outcome"] == "duplicate"

        # A forged webhook (signed with another secret) is refused and recorded nowhere.
        forged_body = first_body.replace(b"evt_", b"evt_forged_")
        forged = await http.post(
            f"{api_url}/v1/psp/webhooks",
            content=forged_body,
            headers={"Stripe-Signature": sign_header(["whsec_attacker"], now_s, forged_body)},
        )
        assert forged.status_code == 400
        assert forged.headers["Content-Type"] == "application/problem+json"

        trial = (await http.get(f"{api_url}/v1/ledger/trial-balance", headers=admin_auth)).json()
        assert trial == trial_before
        assert trial["balanced"]
        assert {(line["account"], line["balance"]) for line in trial["lines"]} >= {
            ("psp_clearing", "50.00"),
            ("merchant_payable:s1", "-27.00"),
            ("merchant_payable:s2", "-18.00"),
            ("platform_revenue", "-5.00"),
        }
        assert face.psp.captured_total() == {"EUR": 5000}


def test_stripe_library_verifies_the_fake_psps_signatures() -> None:
    payload = (
        b'{"id":"evt_1","object":"event","type":"session.authorized","created":1,'
        b'"data":{"object":{"reference":"pay_1"}}}'
    )
    now_s = int(time.time())
    header = sign_header(["whsec_other", SECRET], now_s, payload)
    event = stripe.Webhook.construct_event(payload.decode(), header, SECRET)
    assert event["id"] == "evt_1"
    try:
        stripe.Webhook.construct_event(payload.decode(), header, "whsec_wrong")
    except stripe.SignatureVerificationError:
        pass
    else:
        raise AssertionError("stripe accepted a signature made with another secret")
