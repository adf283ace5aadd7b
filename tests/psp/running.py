"""The fake PSP's face on a real socket (Hypercorn), with a webhook receiver beside it that
records every signed delivery, for tests that drive the face as a Stripe client would."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import attrs
import httpx
import stripe
import trio
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio

from payengine.serve import hypercorn_config
from psp.app import DEFAULT_API_KEY, PSP_EXTENSION, PspFace, PspFaceSettings, create_psp_app
from tests.web.test_e2e_http import FLOW_TIMEOUT_S, _listening_socket

SECRET = "whsec_psp_tests"


@attrs.define(eq=False)
class RunningPsp:
    url: str
    face: PspFace
    #: (body, Stripe-Signature) of every webhook the receiver got, in order.
    received: list[tuple[bytes, str]]

    def client(self, api_key: str = DEFAULT_API_KEY) -> stripe.StripeClient:
        """The official library's async client, pointed at this fake PSP."""
        return stripe.StripeClient(
            api_key,
            base_addresses={"api": self.url},
            http_client=stripe.HTTPXClient(timeout=FLOW_TIMEOUT_S),
            max_network_retries=0,
        )

    async def wait_for_webhooks(self, count: int) -> list[tuple[bytes, str]]:
        with trio.fail_after(FLOW_TIMEOUT_S):
            while len(self.received) < count:
                await trio.sleep(0.02)
        return self.received


@asynccontextmanager
async def running_psp(**settings: Any) -> AsyncIterator[RunningPsp]:
    psp_sock, hook_sock = _listening_socket(), _listening_socket()
    psp_url = f"http://127.0.0.1:{psp_sock.getsockname()[1]}"
    hook_url = f"http://127.0.0.1:{hook_sock.getsockname()[1]}/hooks"
    received: list[tuple[bytes, str]] = []
    receiver = QuartTrio("receiver")

    @receiver.post("/hooks")
    async def hooks() -> Response:
        received.append((await request.get_data(), request.headers["Stripe-Signature"]))
        return Response("", 200)

    face = create_psp_app(PspFaceSettings(psp_url, hook_url, (SECRET,), **settings))
    stop = trio.Event()

    async def trigger() -> None:
        await stop.wait()

    async with trio.open_nursery() as nursery:
        for app, sock in ((face, psp_sock), (receiver, hook_sock)):
            config = hypercorn_config([f"fd://{sock.detach()}"], graceful_timeout_s=0.5)
            nursery.start_soon(lambda a=app, c=config: serve(a, c, shutdown_trigger=trigger))
        async with httpx.AsyncClient() as probe:
            with trio.fail_after(FLOW_TIMEOUT_S):
                while PSP_EXTENSION not in face.extensions:
                    with suppress(httpx.HTTPError):
                        await probe.get(f"{psp_url}/v1/checkout/sessions/cs_probe")
                    await trio.sleep(0.02)
        try:
            yield RunningPsp(psp_url, face.extensions[PSP_EXTENSION], received)
        finally:
            stop.set()
