"""The API on a real Hypercorn server in a thread of its own, for tests that speak HTTP over
real sockets from synchronous code (schemathesis through `requests`, raw sockets).

The memory store, or PostgreSQL when given a database URL (asyncpg then runs on its own
loop in the store's thread, as in `payengine serve`); in-process fake PSP; generous rate limits.
`running_server()` yields the base URL and a storefront and an admin key, and stops the server
(0.5 s graceful timeout) on exit.
"""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import attrs
import trio
from hypercorn.trio import serve

from engine.store.memory import MemoryStore
from engine.store.postgres import open_postgres_store
from payengine.serve import hypercorn_config
from simulator.fake_psp import FakePsp
from web.app import create_app
from web.keys import create_api_key
from web.runtime import EXTENSION, Runtime, Wiring
from web.settings import WebSettings

SERVER_START_TIMEOUT_S = 30.0


@attrs.frozen
class LiveServer:
    url: str
    keys: dict[str, str]


def _serve(
    sock: socket.socket, started: queue.Queue[Any], stop: threading.Event, dsn: str | None
) -> None:
    @asynccontextmanager
    async def open_store() -> AsyncIterator[Any]:
        if dsn is None:
            yield MemoryStore(checkpoint=trio.lowlevel.checkpoint)
        else:
            async with open_postgres_store(dsn) as store:
                yield store

    @asynccontextmanager
    async def open_gateway(clock: Any) -> AsyncIterator[FakePsp]:
        yield FakePsp(clock)

    app = create_app(
        Wiring(open_store=open_store, open_gateway=open_gateway),
        WebSettings(rate_limit_per_s=10_000.0, rate_limit_burst_max=10_000),
    )

    async def main() -> None:
        await serving()

    async def serving() -> None:
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
            started.put(made)
            while not stop.is_set():
                await trio.sleep(0.05)
            done.set()

    trio.run(main)


@contextmanager
def running_server(dsn: str | None = None) -> Iterator[LiveServer]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    started: queue.Queue[Any] = queue.Queue()
    stop = threading.Event()
    thread = threading.Thread(target=_serve, args=(sock, started, stop, dsn), daemon=True)
    thread.start()
    keys = started.get(timeout=SERVER_START_TIMEOUT_S)
    try:
        yield LiveServer(url, keys)
    finally:
        stop.set()
        thread.join(timeout=SERVER_START_TIMEOUT_S)
