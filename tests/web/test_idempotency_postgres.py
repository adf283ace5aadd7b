"""Idempotency-Key on PostgreSQL, across two app instances with their own connection pools
(as two processes behind a load balancer): the second instance replays the first's answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest

from engine.store.postgres import open_postgres_store
from simulator.fake_psp import FakePsp
from tests import pgfixtures
from web.app import create_app
from web.keys import create_api_key
from web.runtime import EXTENSION, Runtime, Wiring
from web.settings import WebSettings

pytestmark = pytest.mark.postgres


def _wiring(dsn: str) -> Wiring:
    @asynccontextmanager
    async def open_gateway(clock: Any) -> AsyncIterator[FakePsp]:
        yield FakePsp(clock)

    return Wiring(open_store=lambda: open_postgres_store(dsn), open_gateway=open_gateway)


async def test_same_key_replays_across_instances_on_postgres() -> None:
    body = {
        "checkout_id": "pg-1",
        "buyer": "buyer-1",
        "currency": "JPY",
        "orders": [{"seller_id": "s1", "amount": "1500"}],
    }
    async with (
        pgfixtures.fresh_database("embedded") as dsn,
        AsyncExitStack() as stack,
    ):
        apps = [create_app(_wiring(dsn), WebSettings()) for _ in range(2)]
        clients = []
        for app in apps:
            test_app = await stack.enter_async_context(app.test_app())
            clients.append(test_app.test_client())
        runtime: Runtime = apps[0].extensions[EXTENSION]
        _, key = await create_api_key(runtime.store, runtime.ids, runtime.clock, "storefront")
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "pg-k1"}
        first = await clients[0].post("/v1/payments", json=body, headers=headers)
        second = await clients[1].post("/v1/payments", json=body, headers=headers)
        assert first.status_code == second.status_code == 201
        assert await first.get_data() == await second.get_data()
        assert second.headers["Idempotent-Replayed"] == "true"
        other = await clients[1].post(
            "/v1/payments", json={**body, "buyer": "buyer-2"}, headers=headers
        )
        assert other.status_code == 422
        assert len(await runtime.store.list_payments(10)) == 1
        ready = await clients[1].get("/readyz")
        assert ready.status_code == 200
