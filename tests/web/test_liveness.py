"""Liveness (web/liveness.py): /healthz turns 503 only when the engine is really gone.

An engine whose nursery ended with an error (a bug in one of its tasks) used to leave the
process answering /healthz 200 forever. Now the lifespan task records it, /healthz answers 503
with the reason, /readyz is 503 too, and `payengine serve` stops with a non-zero exit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from engine.store.memory import MemoryStore
from simulator.fake_psp import FakePsp
from web.app import create_app
from web.liveness import LIVENESS_EXTENSION, Liveness
from web.runtime import EXTENSION, Runtime, Wiring


def _wiring() -> Wiring:
    store = MemoryStore(checkpoint=trio.lowlevel.checkpoint)

    @asynccontextmanager
    async def open_store() -> AsyncIterator[MemoryStore]:
        yield store

    @asynccontextmanager
    async def open_gateway(clock: object) -> AsyncIterator[FakePsp]:
        yield FakePsp(clock)  # type: ignore[arg-type]

    return Wiring(open_store=open_store, open_gateway=open_gateway)


async def test_engine_gone_turns_healthz_503_and_sets_liveness() -> None:
    app = create_app(_wiring())
    async with app.test_app() as test_app:
        client = test_app.test_client()
        liveness: Liveness = app.extensions[LIVENESS_EXTENSION]
        runtime: Runtime = app.extensions[EXTENSION]
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200

        async def bug() -> None:
            raise RuntimeError("a task of the engine broke")

        runtime.engine.ctx.timers.call_later(0, bug)  # runs in the engine's nursery
        with trio.fail_after(5):
            await liveness.gone.wait()
        health = await client.get("/healthz")
        assert health.status_code == 503
        body = await health.get_json()
        assert body["status"] == "gone"
        assert "a task of the engine broke" in body["problems"][0]
        assert (await client.get("/readyz")).status_code == 503


async def test_a_served_engine_is_alive() -> None:
    app = create_app(_wiring())
    async with app.test_app() as test_app:
        client = test_app.test_client()
        await trio.sleep(0.2)
        assert app.extensions[LIVENESS_EXTENSION].alive
        assert (await (await client.get("/healthz")).get_json()) == {"status": "ok", "problems": []}
