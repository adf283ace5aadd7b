"""The narrated demo's payout provider, over real HTTP: the fake PSP's face (psp/app.py, its
payouts desk) on a local port, reached through the engine's HTTP payout client
(web/http_payout_gateway.py), and a small receiver on another local port for its signed
`payout.*` webhooks, which verifies and applies them as `POST /v1/psp/webhooks` does.

Why: the narrated demo runs the engine without its HTTP API (it walks the flow in-process, the
checkout with the in-process FakePsp), but a payout is the seller's money leaving: the reader
should see it leave as `payengine serve` sends it, a Stripe-shaped `POST /v1/payouts` with the
payout id as Idempotency-Key and a signed `payout.paid` coming back. Both servers live on
127.0.0.1 ports the system picks, only while the narration runs.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from functools import partial

import attrs
import httpx
import msgspec
import trio
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio

from actors.engine import Engine
from payengine.serve import hypercorn_config
from psp.app import PSP_EXTENSION, PspFaceSettings, create_psp_app
from psp.payout_desk import PayoutKnobs
from web.bodies import raw_body
from web.http_payout_gateway import HttpPayoutGateway, open_http_payout_gateway
from web.payout_wire import as_return_if_paid, decode_payout_event
from web.psp_wire import UnknownEventType
from web.signature import SignatureError, verify

#: How long after a submit the demo's PSP pays the payout (real seconds).
DEMO_PAID_AFTER_S = 0.2
#: How long the servers take to start before the demo gives up (they are local).
START_TIMEOUT_S = 30.0
#: The signature's age the receiver accepts, as the API's default.
SIGNATURE_TOLERANCE_S = 300
#: How long the servers may take to stop.
GRACEFUL_TIMEOUT_S = 0.5


@attrs.define(eq=False)
class DemoPayouts:
    gateway: HttpPayoutGateway
    psp_url: str
    #: Set once the engine runs; webhooks before that are answered 503 (the PSP retries).
    engine: Engine | None = None
    applied: list[str] = attrs.Factory(list)


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


def _receiver(secret: str, box: list[DemoPayouts]) -> QuartTrio:
    app = QuartTrio("payengine-demo-payout-webhooks")

    @app.post("/hooks")
    async def hooks() -> Response:
        body = await raw_body()
        payouts = box[0] if box else None
        if payouts is None or payouts.engine is None:
            return Response("not ready", 503)
        engine = payouts.engine
        try:
            now_s = engine.ctx.clock.now_ms() // 1000
            verify(
                request.headers.get("Stripe-Signature"),
                body,
                (secret,),
                now_s,
                SIGNATURE_TOLERANCE_S,
            )
            notice = decode_payout_event(body)
        except SignatureError:
            return Response("bad signature", 400)
        except UnknownEventType:
            return Response("", 200)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return Response("not an event", 400)
        notice = await as_return_if_paid(engine.ctx.store, notice)
        outcome = await engine.payouts.apply_notice(notice)
        payouts.applied.append(f"{notice.kind.value} {outcome}")
        return Response("", 200)

    return app


@asynccontextmanager
async def http_payouts() -> AsyncIterator[DemoPayouts]:
    """The fake PSP and the webhook receiver, serving until the block ends."""
    secret = "whsec_" + secrets.token_urlsafe(18)
    psp_sock, hook_sock = _listening_socket(), _listening_socket()
    psp_url = f"http://127.0.0.1:{psp_sock.getsockname()[1]}"
    hook_url = f"http://127.0.0.1:{hook_sock.getsockname()[1]}/hooks"
    box: list[DemoPayouts] = []
    face = create_psp_app(
        PspFaceSettings(
            psp_url, hook_url, (secret,), payout_knobs=PayoutKnobs(paid_after_s=DEMO_PAID_AFTER_S)
        )
    )
    stop = trio.Event()

    async def trigger() -> None:
        await stop.wait()

    async with trio.open_nursery() as nursery:
        for app, sock in ((face, psp_sock), (_receiver(secret, box), hook_sock)):
            config = hypercorn_config(
                [f"fd://{sock.detach()}"], graceful_timeout_s=GRACEFUL_TIMEOUT_S
            )
            nursery.start_soon(partial(serve, app, config, shutdown_trigger=trigger))
        try:
            async with httpx.AsyncClient() as probe:
                with trio.fail_after(START_TIMEOUT_S):
                    while PSP_EXTENSION not in face.extensions:
                        with suppress(httpx.HTTPError):
                            await probe.get(f"{psp_url}/v1/payouts")
                        await trio.sleep(0.02)
            async with open_http_payout_gateway(psp_url) as gateway:
                box.append(DemoPayouts(gateway, psp_url))
                yield box[0]
        finally:
            stop.set()
