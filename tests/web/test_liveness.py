"""Liveness (web/liveness.py): /healthz turns 503 only when the engine is really gone.

An engine whose nursery ended with an error (a bug in one of its tasks) used to leave the
process answering /healthz 200 forever. Now the lifespan task records it, /healthz answers 503
with the reason, /readyz is 503 too, and `payengine serve` stops with a non-zero exit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import trio

from engine.store.memory import MemoryStore
from simulator.fake_psp import FakePsp
from tests import pgfixtures
from tests.web.test_serve_process import (  # noqa: F401 (database_url is a fixture)
    EXIT_TIMEOUT_S,
    Process,
    _free_port,
    database_url,
)
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


@pytest.mark.postgres
def test_serve_exits_non_zero_when_the_engine_is_gone(database_url: str) -> None:  # noqa: F811
    """A real `payengine serve` whose engine fails for good (not weather: its lease table was
    dropped under it, so the heartbeat fails with an undefined table) stops by itself with
    exit code 1, for its supervisor to restart it."""
    port = _free_port()
    process = Process(["serve", "--port", str(port), "--psp-port", str(_free_port())], database_url)
    try:
        process.wait_for(f"payengine API on http://127.0.0.1:{port}")
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
        pgfixtures.execute_sync(database_url, "DROP TABLE process_leases")
        assert process.popen.wait(timeout=EXIT_TIMEOUT_S) == 1
        process.wait_for("engine gone", timeout_s=EXIT_TIMEOUT_S)
    finally:
        process.kill()
