"""Our API and the fake PSP on real sockets (Hypercorn both), wired as `payengine serve` wires
them: the engine pays sellers through the PSP's payouts API (web/http_payout_gateway.py), the
PSP's `payout.*` webhooks come back signed to /v1/psp/webhooks. And a seller with money in its
wallet: a checkout paid through the hosted page, over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import httpx
import trio
from hypercorn.trio import serve

from engine.limits import EngineConfig
from engine.store.memory import MemoryStore
from payengine.serve import hypercorn_config
from psp.app import PSP_EXTENSION, PspFace, PspFaceSettings, create_psp_app
from psp.payout_desk import PayoutDesk, PayoutEvent, PayoutKnobs
from psp.pump import Delivery
from tests.web.test_e2e_http import FLOW_TIMEOUT_S, _listening_socket
from web.app import create_app
from web.http_gateway import open_http_gateway
from web.http_payout_gateway import open_http_payout_gateway
from web.keys import create_api_key
from web.runtime import EXTENSION, Runtime, Wiring
from web.settings import WebSettings

SECRET = "whsec_payouts_http"


@attrs.define(eq=False)
class PayoutWorld:
    api_url: str
    psp_url: str
    runtime: Runtime
    face: PspFace
    http: httpx.AsyncClient
    admin: str = ""

    @property
    def desk(self) -> PayoutDesk:
        return self.face.payouts

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin}"}

    async def get(self, path: str) -> Any:
        answer = await self.http.get(f"{self.api_url}{path}", headers=self.auth())
        assert answer.status_code == 200, answer.text
        return answer.json()

    async def wait_for(self, path: str, ok: Callable[[Any], bool]) -> Any:
        with trio.fail_after(FLOW_TIMEOUT_S):
            while True:
                got = await self.get(path)
                if ok(got):
                    return got
                await trio.sleep(0.05)

    async def sell(self, checkout_id: str = "c1", amount: str = "30.00") -> None:
        """A buyer pays `amount` EUR to seller s1 (90% reaches its wallet)."""
        _, storefront = await create_api_key(
            self.runtime.store, self.runtime.ids, self.runtime.clock, "storefront"
        )
        body = {
            "checkout_id": checkout_id,
            "buyer": "buyer-1",
            "currency": "EUR",
            "orders": [{"seller_id": "s1", "amount": amount}],
            "return_url": "https://shop.example/done",
        }
        headers = {"Authorization": f"Bearer {storefront}", "Idempotency-Key": checkout_id}
        created = await self.http.post(f"{self.api_url}/v1/payments", json=body, headers=headers)
        assert created.status_code == 201, created.text
        hosted = created.json()["hosted_url"]
        paid = await self.http.post(hosted, data={"card_number": "4242 4242 4242 4242"})
        assert paid.status_code == 303, paid.text
        await self.wait_for("/v1/merchants/s1/balance", lambda b: bool(b["balances"]))

    async def pay_out(self, amount: str, key: str = "po-1") -> dict[str, Any]:
        headers = {**self.auth(), "Idempotency-Key": key}
        body = {"merchant_id": "s1", "amount": amount, "currency": "EUR"}
        made = await self.http.post(f"{self.api_url}/v1/payouts", json=body, headers=headers)
        assert made.status_code == 201, made.text
        payout: dict[str, Any] = made.json()
        return payout

    async def wallet(self) -> tuple[str, str]:
        """s1's EUR (available, reserved)."""
        balance = (await self.get("/v1/merchants/s1/balance"))["balances"][0]
        return balance["available"], balance["reserved"]


def lose_payout_events(event: PayoutEvent) -> Sequence[Delivery]:
    """A payout webhook plan: every payout event is lost (the test sends them itself)."""
    return ()


@asynccontextmanager
async def payout_world(
    knobs: PayoutKnobs | None = None,
    payout_webhook_plan: Callable[[PayoutEvent], Sequence[Delivery]] | None = None,
    engine_config: EngineConfig | None = None,
) -> AsyncIterator[PayoutWorld]:
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
        engine_config=engine_config
        or EngineConfig(outbox_poll_interval_s=0.05, retry_delay_s_base=0.05),
        open_payout_gateway=lambda clock: open_http_payout_gateway(psp_url),
    )
    api = create_app(wiring, WebSettings(psp_webhook_secrets=(SECRET,), public_base_url=api_url))
    psp = create_psp_app(
        PspFaceSettings(
            psp_url,
            f"{api_url}/v1/psp/webhooks",
            (SECRET,),
            payout_knobs=knobs or PayoutKnobs(paid_after_s=0.2, returned_after_s=0.3),
            payout_webhook_plan=payout_webhook_plan,
        )
    )
    stop = trio.Event()

    async def trigger() -> None:
        await stop.wait()

    async with trio.open_nursery() as nursery, httpx.AsyncClient() as http:
        for app, sock in ((psp, psp_sock), (api, api_sock)):
            config = hypercorn_config([f"fd://{sock.detach()}"], graceful_timeout_s=0.5)
            nursery.start_soon(lambda a=app, c=config: serve(a, c, shutdown_trigger=trigger))
        with trio.fail_after(FLOW_TIMEOUT_S):
            while True:
                try:
                    ready = (await http.get(f"{api_url}/readyz")).status_code == 200
                    if ready and PSP_EXTENSION in psp.extensions:
                        break
                except httpx.HTTPError:
                    pass
                await trio.sleep(0.05)
        runtime: Runtime = api.extensions[EXTENSION]
        world = PayoutWorld(api_url, psp_url, runtime, psp.extensions[PSP_EXTENSION], http)
        _, world.admin = await create_api_key(runtime.store, runtime.ids, runtime.clock, "admin")
        try:
            yield world
        finally:
            stop.set()
