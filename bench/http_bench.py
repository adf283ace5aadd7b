"""HTTP benchmark: sustained POST /v1/payments per second and p50/p99 latency.

    python -m bench.http_bench [--store postgres|memory] [--duration-s 15]
                               [--concurrency 32,8] [--rate 50,100,200,400] [--profile FILE]

The server (the real app on Hypercorn's trio worker, the in-process fake PSP object as the
gateway, PostgreSQL from DATABASE_URL or the embedded one, or the memory store) runs in a
child process; the load generator (bench/http_load.py: raw HTTP/1.1 on trio, each request a
new two-seller checkout with its own Idempotency-Key) runs in this one. After a warm-up, one
window of `--duration-s` per closed-loop concurrency (sustained throughput) and per open-loop
rate (latency below saturation, measured from when each request was due). Each window prints
one JSON line: requests/s, p50/p99/max latency, errors by status, and the CPU share of the
server process, of this client process and of the whole machine (2 cores = 200%; other jobs
count too), with server and client CPU milliseconds per request. `--profile` writes a cProfile
of the server process (pstats format) when the run ends.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

#: How long the child gets to stop (and write its profile) before it is killed.
SERVER_STOP_TIMEOUT_S = 20.0
WARMUP_S = 2.0
#: Pause between measured windows, so one window's backlog does not leak into the next.
COOL_DOWN_S = 1.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(
    port: int, store_kind: str, profile_path: str | None = None, plain_gc: bool = False
) -> None:
    """The child: the API with the in-process fake PSP; prints its two keys, then serves."""
    import trio
    from hypercorn.trio import serve as hypercorn_serve

    from engine.store.memory import MemoryStore
    from payengine.serve import hypercorn_config, wait_for_signal
    from simulator.fake_psp import FakePsp
    from web.app import create_app
    from web.gctune import tune_for_serving
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
        async with trio.open_nursery() as nursery:
            config = hypercorn_config([f"127.0.0.1:{port}"])
            # SIGINT or SIGTERM (the parent's way of saying stop) ends serving gracefully.
            nursery.start_soon(
                functools.partial(hypercorn_serve, app, config, shutdown_trigger=wait_for_signal)
            )
            while EXTENSION not in app.extensions:  # noqa: ASYNC110 (the app offers no event)
                await trio.sleep(0.05)
            runtime = app.extensions[EXTENSION]
            _, key = await create_api_key(runtime.store, runtime.ids, runtime.clock, "storefront")
            if not plain_gc:
                tune_for_serving()  # web/gctune.py: what a serving process should do
            print(json.dumps({"key": key}), flush=True)

    profiler = cProfile.Profile() if profile_path else None
    if profiler is not None:
        profiler.enable()
    try:
        trio.run(main)
    finally:
        if profiler is not None:
            profiler.disable()
            assert profile_path is not None
            profiler.dump_stats(profile_path)


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores (Linux /proc/stat)."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(values) - idle) / tick, sum(values) / tick


async def run_all(
    port: int, key: str, server_pid: int, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Warm up, then one measured window per concurrency and per rate; one result each."""
    import trio

    from bench.http_load import closed_loop, cpu_s, open_loop, payment_request, summary

    host = "127.0.0.1"
    counter = iter(range(1 << 62))
    run_id = os.getpid()

    def next_request() -> bytes:
        return payment_request(host, port, key, f"bench-{run_id}-{next(counter)}")

    await closed_loop(host, port, next_request, 8, WARMUP_S)
    plan = [("closed", c) for c in args.concurrency] + [("open", r) for r in args.rate]
    results = []
    for mode, level in plan:
        client_before, server_before = cpu_s(), _proc_cpu_s(server_pid)
        busy_before, total_before = _machine_busy_s()
        started = time.perf_counter()
        if mode == "closed":
            tally = await closed_loop(host, port, next_request, int(level), args.duration_s)
        else:
            tally = await open_loop(host, port, next_request, float(level), args.duration_s)
        wall_s = time.perf_counter() - started
        client_s, server_s = cpu_s() - client_before, _proc_cpu_s(server_pid) - server_before
        busy_after, total_after = _machine_busy_s()
        result = summary(tally, wall_s)
        ok = max(1, result["requests_ok"])
        result.update(
            {
                "store": args.store,
                "mode": mode,
                ("concurrency" if mode == "closed" else "rate_per_s"): level,
                "server_cpu_pct": round(100 * server_s / wall_s, 1),
                "client_cpu_pct": round(100 * client_s / wall_s, 1),
                "machine_busy_pct": round(
                    100 * (busy_after - busy_before) / (total_after - total_before), 1
                ),
                "server_cpu_ms_per_req": round(1000 * server_s / ok, 3),
                "client_cpu_ms_per_req": round(1000 * client_s / ok, 3),
            }
        )
        print(json.dumps(result), flush=True)
        results.append(result)
        await trio.sleep(COOL_DOWN_S)
    return results


def _numbers(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text}") from None
    if any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"every value must be positive: {text}")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["postgres", "memory"], default="postgres")
    parser.add_argument("--duration-s", type=float, default=15.0, help="per measured window")
    parser.add_argument(
        "--concurrency",
        type=_numbers,
        default=None,
        help="closed loop: comma-separated connection counts (default 32 unless --rate)",
    )
    parser.add_argument(
        "--rate", type=_numbers, default=[], help="open loop: comma-separated requests/s"
    )
    parser.add_argument("--profile", help="write a cProfile of the server process here")
    parser.add_argument(
        "--plain-gc", action="store_true", help="keep CPython's default GC (no web/gctune.py)"
    )
    parser.add_argument("--serve-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.duration_s <= 0:
        parser.error("--duration-s must be positive")
    if args.serve_port:
        serve(args.serve_port, args.store, args.profile, args.plain_gc)
        return
    if args.concurrency is None:
        args.concurrency = [] if args.rate else [32.0]
    args.concurrency = [int(c) for c in args.concurrency]
    import trio

    port = _free_port()
    command = [sys.executable, "-m", "bench.http_bench", "--serve-port", str(port)]
    command += ["--store", args.store] + (["--profile", args.profile] if args.profile else [])
    command += ["--plain-gc"] if args.plain_gc else []
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line:
            raise SystemExit("the server did not start")
        key = json.loads(line)["key"]
        trio.run(run_all, port, key, child.pid, args)
    finally:
        child.send_signal(signal.SIGINT)  # the child writes its profile, if asked, and stops
        try:
            child.wait(timeout=SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


if __name__ == "__main__":
    main()
