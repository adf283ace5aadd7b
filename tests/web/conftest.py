"""A running API for tests: memory store, in-process fake PSP, autojump clock, three keys.

`api` yields an `Api` with a Quart test client and keys for each scope; the PSP is the
in-process FakePsp (its webhooks are signed and posted by the test through the client, exactly
as the HTTP face does over the network).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest

from engine.gateway import PspNotification
from engine.limits import EngineConfig
from engine.ports import Clock
from engine.store.memory import MemoryStore
from simulator.fake_psp import FakePsp
from tests.actors.harness import EPOCH_MS
from web.app import create_app
from web.keys import create_api_key
from web.psp_wire import encode_event
from web.runtime import EXTENSION, Runtime, Wiring
from web.settings import WebSettings
from web.signature import sign_header

SECRET = "whsec_test_secret"


@attrs.define(eq=False)
class Api:
    client: Any
    runtime: Runtime
    psp: FakePsp
    storefront: str
    admin: str
    merchant: dict[str, str] = attrs.Factory(dict)

    def auth(self, key: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}", **extra}

    async def merchant_key(self, merchant_id: str) -> str:
        if merchant_id not in self.merchant:
            _, text = await create_api_key(
                self.runtime.store, self.runtime.ids, self.runtime.clock, f"merchant:{merchant_id}"
            )
            self.merchant[merchant_id] = text
        return self.merchant[merchant_id]

    async def post_webhook(self, event: PspNotification, secret: str = SECRET) -> Any:
        body = encode_event(event)
        now_s = self.runtime.clock.now_ms() // 1000
        headers = {"Stripe-Signature": sign_header([secret], now_s, body)}
        return await self.client.post("/v1/psp/webhooks", data=body, headers=headers)


def settings(**overrides: Any) -> WebSettings:
    return WebSettings(**{"psp_webhook_secrets": (SECRET,), **overrides})


@asynccontextmanager
async def open_api(
    web_settings: WebSettings | None = None,
    store: Any = None,
    make_notifier: Any = None,
    payout_provider: Any = None,
) -> AsyncIterator[Api]:
    """`payout_provider`: a payout gateway for the engine (tests/web/test_payouts_api.py)."""
    holder: dict[str, FakePsp] = {}
    memory = store or MemoryStore()

    @asynccontextmanager
    async def open_store() -> AsyncIterator[Any]:
        yield memory

    @asynccontextmanager
    async def open_gateway(clock: Clock) -> AsyncIterator[FakePsp]:
        holder["psp"] = FakePsp(clock)
        yield holder["psp"]

    wiring = Wiring(
        open_store=open_store,
        open_gateway=open_gateway,
        engine_config=EngineConfig(outbox_poll_interval_s=30.0),
        epoch_ms=lambda: EPOCH_MS,
        seed=7,
        make_notifier=make_notifier,
        open_payout_gateway=None if payout_provider is None else _yielding(payout_provider),
    )
    app = create_app(wiring, web_settings or settings())
    async with app.test_app() as test_app:
        runtime: Runtime = app.extensions[EXTENSION]
        _, storefront = await create_api_key(
            runtime.store, runtime.ids, runtime.clock, "storefront"
        )
        _, admin = await create_api_key(runtime.store, runtime.ids, runtime.clock, "admin")
        yield Api(test_app.test_client(), runtime, holder["psp"], storefront, admin)


def _yielding(value: Any) -> Any:
    @asynccontextmanager
    async def open_it(clock: Clock) -> AsyncIterator[Any]:
        yield value

    return open_it


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    """Tests take `autojump_clock` too: pytest-trio installs a clock only from test arguments."""
    async with open_api() as running:
        yield running
