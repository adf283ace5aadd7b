"""A database outage while the engine serves, over real HTTP (Hypercorn) on real PostgreSQL.

The store reaches PostgreSQL through a proxy the test cuts (tests/outage_proxy.py): every open
connection drops, every new one is refused. During the outage: the engine survives, /healthz
stays 200, /readyz is 503, POST /v1/payments and the PSP webhook answer 503 problem+json with
Retry-After, and a buyer may pay on the PSP's hosted page. After it: /readyz is 200 within 5 s,
the payment paid during the outage completes (the PSP redelivers its webhook), new payments go
through, and nothing is lost or captured twice.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio
from hypercorn.trio import serve

from engine.limits import EngineConfig
from engine.store.postgres import PostgresLimits, open_postgres_store
from payengine.serve import hypercorn_config
from psp.app import PSP_EXTENSION, PspFace, PspFaceSettings, create_psp_app
from psp.pump import PumpLimits
from tests import pgfixtures
from tests.outage_proxy import CuttableProxy, open_cuttable_proxy
from web.app import create_app
from web.http_gateway import open_http_gateway
from web.keys import create_api_key
from web.runtime import EXTENSION, Runtime, Wiring
from web.settings import WebSettings
from web.signature import sign_header

pytestmark = pytest.mark.postgres

SECRET = "whsec_outage"
#: The issue's bound: ready again within 5 s after the database is back.
READY_AFTER_OUTAGE_S_MAX = 5.0
#: Real time: the whole test takes a few seconds; this bounds a hang.
FLOW_TIMEOUT_S = 60.0


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


@asynccontextmanager
async def running_world(
    proxy: CuttableProxy,
) -> AsyncIterator[tuple[str, Runtime, PspFace]]:
    api_sock, psp_sock = _listening_socket(), _listening_socket()
    api_url = f"http://127.0.0.1:{api_sock.getsockname()[1]}"
    psp_url = f"http://127.0.0.1:{psp_sock.getsockname()[1]}"
    # Small timeouts so that a cut is noticed at once (a refused connect is instant anyway).
    limits = PostgresLimits(connect_timeout_s=2.0, acquire_timeout_s=5.0, commit_timeout_s=2.0)
    wiring = Wiring(
        open_store=lambda: open_postgres_store(proxy.dsn(), limits=limits),
        open_gateway=lambda clock: open_http_gateway(psp_url),
        engine_config=EngineConfig(outbox_poll_interval_s=0.05),
    )
    api = create_app(wiring, WebSettings(psp_webhook_secrets=(SECRET,), public_base_url=api_url))
    face_settings = PspFaceSettings(
        psp_url,
        f"{api_url}/v1/psp/webhooks",
        (SECRET,),
        pump=PumpLimits(delay_s_base=0.2, delay_s_max=1.0),
    )
    psp = create_psp_app(face_settings)
    stop = trio.Event()

    async def trigger() -> None:
        await stop.wait()

    async with trio.open_nursery() as nursery:
        for app, sock in ((psp, psp_sock), (api, api_sock)):
            config = hypercorn_config([f"fd://{sock.detach()}"], graceful_timeout_s=0.5)
            nursery.start_soon(lambda a=app, c=config: serve(a, c, shutdown_trigger=trigger))
        async with httpx.AsyncClient() as probe:
            await _wait_status(probe, f"{api_url}/readyz", 200)
        try:
            yield api_url, api.extensions[EXTENSION], psp.extensions[PSP_EXTENSION]
        finally:
            stop.set()


async def _wait_status(http: httpx.AsyncClient, url: str, status: int, **kw: Any) -> float:
    """Poll `url` until it answers `status`; returns how long that took."""
    started = trio.current_time()
    with trio.fail_after(FLOW_TIMEOUT_S):
        while True:
            try:
                if (await http.get(url, **kw)).status_code == status:
                    return trio.current_time() - started
            except httpx.HTTPError:
                pass
            await trio.sleep(0.05)


def _body(checkout_id: str, amount: str) -> dict[str, Any]:
    return {
        "checkout_id": checkout_id,
        "buyer": "buyer-1",
        "currency": "EUR",
        "orders": [
            {"seller_id": "s1", "amount": amount},
            {"seller_id": "s2", "amount": "1.00"},
        ],
        "return_url": "https://shop.example/done",
    }


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert int(response.headers["Retry-After"]) >= 1
    problem = response.json()
    assert problem["status"] == 503 and problem["type"].endswith("/unavailable")


async def test_database_outage_is_weather_over_http() -> None:
    async with (
        pgfixtures.fresh_database("embedded") as dsn,
        open_cuttable_proxy(dsn) as proxy,
        running_world(proxy) as (api_url, runtime, face),
        httpx.AsyncClient(timeout=10.0) as http,
    ):
        _, storefront = await create_api_key(
            runtime.store, runtime.ids, runtime.clock, "storefront"
        )
        _, admin = await create_api_key(runtime.store, runtime.ids, runtime.clock, "admin")
        store_auth = {"Authorization": f"Bearer {storefront}"}
        admin_auth = {"Authorization": f"Bearer {admin}"}
        first = await http.post(
            f"{api_url}/v1/payments",
            json=_body("outage-1", "30.00"),
            headers={**store_auth, "Idempotency-Key": "k1"},
        )
        assert first.status_code == 201, first.text
        first_payment = first.json()
        sent_before = len(face.pump.sent)

        proxy.cut()
        await _wait_status(http, f"{api_url}/readyz", 503)
        ready = await http.get(f"{api_url}/readyz")
        assert any("database unreachable" in p for p in ready.json()["problems"])
        assert (await http.get(f"{api_url}/healthz")).status_code == 200
        second_key = {**store_auth, "Idempotency-Key": "k2"}
        refused = await http.post(
            f"{api_url}/v1/payments", json=_body("outage-2", "40.00"), headers=second_key
        )
        _assert_unavailable(refused)
        # The buyer pays on the PSP's hosted page meanwhile; its webhook is refused (503).
        paid = await http.post(
            first_payment["hosted_url"], data={"card_number": "4242 4242 4242 4242"}
        )
        assert paid.status_code == 303
        event = (
            b'{"id":"evt_outage_1","object":"event","type":"session.authorized","created":1,'
            b'"data":{"object":{"reference":"' + first_payment["id"].encode() + b'"}}}'
        )
        now_s = runtime.clock.now_ms() // 1000
        webhook = await http.post(
            f"{api_url}/v1/psp/webhooks",
            content=event,
            headers={"Stripe-Signature": sign_header([SECRET], now_s, event)},
        )
        _assert_unavailable(webhook)
        await trio.sleep(1.0)  # the outage lasts: actors and consumers keep retrying
        assert (await http.get(f"{api_url}/healthz")).status_code == 200
        assert len(face.pump.sent) == sent_before  # nothing was acknowledged meanwhile

        proxy.restore()
        took_s = await _wait_status(http, f"{api_url}/readyz", 200)
        assert took_s < READY_AFTER_OUTAGE_S_MAX
        second = await http.post(
            f"{api_url}/v1/payments", json=_body("outage-2", "40.00"), headers=second_key
        )
        assert second.status_code == 201, second.text
        paid = await http.post(
            second.json()["hosted_url"], data={"card_number": "4242 4242 4242 4242"}
        )
        assert paid.status_code == 303
        with trio.fail_after(FLOW_TIMEOUT_S):
            for payment_id in (first_payment["id"], second.json()["id"]):
                while True:
                    got = await http.get(f"{api_url}/v1/payments/{payment_id}", headers=admin_auth)
                    if got.json()["status"] == "completed":
                        break
                    await trio.sleep(0.05)
        listed = await http.get(f"{api_url}/v1/payments", headers=admin_auth)
        assert len(listed.json()["data"]) == 2
        trial = (await http.get(f"{api_url}/v1/ledger/trial-balance", headers=admin_auth)).json()
        assert trial["balanced"]
        lines = {(line["account"], line["balance"]) for line in trial["lines"]}
        assert ("psp_clearing", "72.00") in lines
        assert face.psp.captured_total() == {"EUR": 7200}  # each of the 4 orders once
        assert len(face.psp.captures) == 4
        assert runtime.engine.system.statistics().crash_loops == ()
        assert (await http.get(f"{api_url}/healthz")).status_code == 200
