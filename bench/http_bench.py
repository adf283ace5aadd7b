"""HTTP benchmark: sustained POST /v1/payments per second and p50/p99 latency.

    python -m bench.http_bench [--store postgres|memory] [--duration-s 15] [--concurrency 32]

The server (the real app on Hypercorn's trio worker, the in-process fake PSP, PostgreSQL from
DATABASE_URL or the embedded one) runs in a child process; the load generator (httpx on trio,
`--concurrency` workers, each a distinct checkout with its own Idempotency-Key) runs in this
one, so client and server do not share a CPU's event loop. Latency is measured per request
from send to full response. Results print as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

#: How long the child gets to start (embedded PostgreSQL start-up included).
SERVER_START_TIMEOUT_S = 60.0
WARMUP_S = 2.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(port: int, store_kind: str) -> None:
    """The child: the API with the in-process fake PSP; prints its two keys, then serves."""
    import trio
    import trio_asyncio
    from hypercorn.trio import serve as hypercorn_serve

    from engine.store.memory import MemoryStore
    from payengine.serve import hypercorn_config
    from simulator.fake_psp import FakePsp
    from web.app import create_app
    from web.keys import create_api_key
    from web.logs import configure_logging
    from web.runtime import EXTENSION, Wiring
    from web.settings import WebSettings

    @asynccontextmanager
    async def open_store() -> AsyncIterator[Any]:
        if store_kind == "memory":
            yield MemoryStore(checkpoint=trio.lowlevel.checkpoint)
            return
        from engine.store.postgres import open_postgres_store
        from payengine.database import resolve_database_url

        dsn = await trio.to_thread.run_sync(resolve_database_url)
        async with open_postgres_store(dsn, pool_size_max=20) as store:
            yield store

    @asynccontextmanager
    async def open_gateway(clock: Any) -> AsyncIterator[FakePsp]:
        yield FakePsp(clock)

    configure_logging(logging.WARNING)  # stderr; a request log line per call would dominate
    app = create_app(
        Wiring(open_store=open_store, open_gateway=open_gateway),
        WebSettings(rate_limit_per_s=1e6, rate_limit_burst_max=1_000_000),
    )

    async def main() -> None:
        async with trio_asyncio.open_loop(), trio.open_nursery() as nursery:
            config = hypercorn_config([f"127.0.0.1:{port}"])
            nursery.start_soon(hypercorn_serve, app, config)
            while EXTENSION not in app.extensions:  # noqa: ASYNC110 (the app offers no event)
                await trio.sleep(0.05)
            runtime = app.extensions[EXTENSION]
            _, key = await create_api_key(runtime.store, runtime.ids, runtime.clock, "storefront")
            print(json.dumps({"key": key}), flush=True)

    trio.run(main)


async def load(url: str, key: str, duration_s: float, concurrency: int) -> dict[str, Any]:
    import httpx
    import trio

    latencies_s: list[float] = []
    errors: dict[str, int] = {}
    run_id = os.getpid()

    async def worker(index: int, client: httpx.AsyncClient, until_s: float, record: bool) -> None:
        n = 0
        while trio.current_time() < until_s:
            n += 1
            checkout = f"bench-{run_id}-{record}-{index}-{n}"
            body = {
                "checkout_id": checkout,
                "buyer": f"buyer-{index}-{n}",
                "currency": "EUR",
                "orders": [
                    {"seller_id": "s1", "amount": "10.00"},
                    {"seller_id": "s2", "amount": "5.50"},
                ],
            }
            headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": checkout}
            started = time.perf_counter()
            try:
                response = await client.post(f"{url}/v1/payments", json=body, headers=headers)
                status = str(response.status_code)
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            elapsed = time.perf_counter() - started
            if record:
                if status == "201":
                    latencies_s.append(elapsed)
                else:
                    errors[status] = errors.get(status, 0) + 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:
        for record, span_s in ((False, WARMUP_S), (True, duration_s)):
            until_s = trio.current_time() + span_s
            started = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for index in range(concurrency):
                    nursery.start_soon(worker, index, client, until_s, record)
            wall_s = time.perf_counter() - started
    latencies_s.sort()
    if not latencies_s:
        return {"requests_ok": 0, "errors": errors}

    def pct(p: float) -> float:
        return round(latencies_s[min(len(latencies_s) - 1, int(p * len(latencies_s)))] * 1000, 2)

    return {
        "requests_ok": len(latencies_s),
        "errors": errors,
        "duration_s": round(wall_s, 2),
        "per_s": round(len(latencies_s) / wall_s, 1),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "concurrency": concurrency,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["postgres", "memory"], default="postgres")
    parser.add_argument("--duration-s", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--serve-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_port:
        serve(args.serve_port, args.store)
        return
    import trio

    port = _free_port()
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.http_bench",
            "--serve-port",
            str(port),
            "--store",
            args.store,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line:
            raise SystemExit("the server did not start")
        key = json.loads(line)["key"]
        result = trio.run(load, f"http://127.0.0.1:{port}", key, args.duration_s, args.concurrency)
        result["store"] = args.store
        print(json.dumps(result))
    finally:
        child.terminate()
        child.wait(timeout=SERVER_START_TIMEOUT_S)


if __name__ == "__main__":
    main()
