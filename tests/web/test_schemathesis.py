"""schemathesis against /openapi.json over real HTTP: no 5xx, every response matches the
schema. Bounded: `EXAMPLES_PER_OPERATION_MAX` generated cases per operation.

The server runs in a thread of its own (trio + Hypercorn, memory store, in-process fake PSP),
since schemathesis calls it synchronously through `requests`.
"""

from __future__ import annotations

import queue
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import schemathesis
import trio
from hypercorn.trio import serve
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import response_schema_conformance

from engine.store.memory import MemoryStore
from payengine.serve import hypercorn_config
from simulator.fake_psp import FakePsp
from web.app import create_app
from web.keys import create_api_key
from web.runtime import EXTENSION, Runtime, Wiring
from web.settings import WebSettings

EXAMPLES_PER_OPERATION_MAX = 25
SERVER_START_TIMEOUT_S = 30.0


def _server(sock: socket.socket, keys: queue.Queue[Any], stop: threading.Event) -> None:
    @asynccontextmanager
    async def open_store() -> AsyncIterator[Any]:
        yield MemoryStore(checkpoint=trio.lowlevel.checkpoint)

    @asynccontextmanager
    async def open_gateway(clock: Any) -> AsyncIterator[FakePsp]:
        yield FakePsp(clock)

    app = create_app(
        Wiring(open_store=open_store, open_gateway=open_gateway),
        WebSettings(rate_limit_per_s=10_000.0, rate_limit_burst_max=10_000),
    )

    async def main() -> None:
        done = trio.Event()

        async def trigger() -> None:
            await done.wait()

        async with trio.open_nursery() as nursery:
            config = hypercorn_config([f"fd://{sock.detach()}"], graceful_timeout_s=0.5)
            nursery.start_soon(lambda: serve(app, config, shutdown_trigger=trigger))
            while EXTENSION not in app.extensions:
                await trio.sleep(0.01)
            runtime: Runtime = app.extensions[EXTENSION]
            made = {}
            for scope in ("storefront", "admin"):
                _, made[scope] = await create_api_key(
                    runtime.store, runtime.ids, runtime.clock, scope
                )
            keys.put(made)
            while not stop.is_set():
                await trio.sleep(0.05)
            done.set()

    trio.run(main)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, dict[str, str]]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    keys: queue.Queue[Any] = queue.Queue()
    stop = threading.Event()
    thread = threading.Thread(target=_server, args=(sock, keys, stop), daemon=True)
    thread.start()
    made = keys.get(timeout=SERVER_START_TIMEOUT_S)
    yield url, made
    stop.set()
    thread.join(timeout=SERVER_START_TIMEOUT_S)


def test_api_conforms_to_its_openapi_schema(server: tuple[str, dict[str, str]]) -> None:
    url, keys = server
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8
    for operation in operations:
        _check_operation(url, operation, keys)


def _check_operation(url: str, operation: Any, keys: dict[str, str]) -> None:
    key = keys["storefront"] if operation.path.startswith("/v1/payments") else keys["admin"]

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION_MAX,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def check(case: schemathesis.Case) -> None:
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": str(uuid.uuid4())}
        response = case.call(base_url=url, headers=headers)
        assert response.status_code < 500, (case.method, case.path, response.text)
        case.validate_response(response, checks=[response_schema_conformance])

    check()
