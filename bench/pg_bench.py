"""`python -m bench.pg_bench`: full payments on PostgreSQL end to end, beside the memory store.

    PAYENGINE_DATA_DIR=... python -m bench.pg_bench [--duration-s 8] [--concurrency 1,16,64]
                                                    [--rate 50,100,200] [--store postgres,memory]
                                                    [--json FILE]

A payment is a checkout of 1-3 orders (create -> the buyer pays on the hosted page -> the
PSP's authorization webhook -> one capture per order -> every capture booked -> COMPLETED),
driven in-process against the engine (actors/engine.py) with the fake PSP answering at once
and its webhooks delivered as they come. Real time: PostgreSQL commits durably
(`synchronous_commit` on; the bench checks). Each window prints one JSON line: payments/s,
p50/p99/p999 latency (closed loop: from the create call; open loop: from when the payment was
due, so falling behind shows as latency), CPU ms per payment of this process (every thread)
and of PostgreSQL (all its processes, /proc), statements (round trips), units of work,
bridge crossings, trio task steps and run-loop turns per payment.

The memory store runs the same windows in the same process (real clock too): its CPU per
payment is the Python floor the PostgreSQL figures are compared with.
"""

from __future__ import annotations

import argparse
import bisect
import gc
import json
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from actors.clock import TrioClock
from actors.engine import open_engine
from actors.outbox import Subscriber
from actors.service import CreateCheckout, OrderLine, PaymentView
from bench.pg_counts import (
    LoopCounts,
    counting,
    fresh_database,
    install_statement_counter,
    postgres_cpu_s,
    run_asyncio,
    server_pid_of,
    thread_cpu_s,
)
from engine.gateway import PspNotification
from engine.ids import Ids
from engine.limits import EngineConfig
from engine.records import Delivery
from engine.store.memory import MemoryStore
from simulator.fake_psp import FakePsp

EPOCH_MS = 1_767_225_600_000
SELLERS = 50
WARMUP_S = 2.0
COOL_DOWN_S = 0.5
WEBHOOK_ATTEMPTS_MAX = 100
#: Same GC thresholds as `python -m bench` (trio makes many short-lived cycles).
GC_THRESHOLDS = (100_000, 50, 100)
BENCH_DATABASE = "payengine_bench"
POOL_SIZE_MAX = 20
#: The thread engine/store/pg_bridge.py runs asyncpg in (its CPU is part of the engine's).
BRIDGE_THREAD = "payengine-asyncpg"


def quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))
    return sorted_values[index]


class Driver:
    """The engine plus a buyer per payment; counts what each window did."""

    def __init__(self, engine: Any, psp: FakePsp, orders_max: int) -> None:
        self.engine = engine
        self.psp = psp
        self.orders_max = orders_max
        self.waiting: dict[str, trio.Event] = {}
        self.next_index = 0
        self.completed = 0

    async def on_completed(self, delivery: Delivery) -> None:
        event = self.waiting.pop(delivery.message.key, None)
        if event is not None:
            event.set()

    async def deliver(self, event: PspNotification) -> None:
        for _ in range(WEBHOOK_ATTEMPTS_MAX):  # the PSP redelivers until acknowledged
            if await self.engine.service.handle_psp_event(event) != "retry_later":
                return
            await trio.sleep(0.01)

    async def pump(self) -> None:
        async with trio.open_nursery() as deliveries:
            async for event in self.psp.webhook_receive:
                deliveries.start_soon(self.deliver, event)

    async def pay(self) -> None:
        """One full payment, returning when it is COMPLETED."""
        i = self.next_index
        self.next_index += 1
        lines = tuple(
            OrderLine(f"seller-{(i + k) % SELLERS}", 100 + (i * 7 + k) % 5_000)
            for k in range(1 + i % self.orders_max)
        )
        view = await self.engine.service.create_checkout(
            CreateCheckout(f"chk-{i}-{time.monotonic_ns()}", f"buyer-{i}", "USD", lines)
        )
        assert isinstance(view, PaymentView) and view.payment.psp_session_id
        done = trio.Event()
        self.waiting[view.payment.payment_id] = done
        self.psp.buyer_pays(view.payment.psp_session_id)
        await done.wait()
        self.completed += 1


async def closed_loop(driver: Driver, concurrency: int, duration_s: float) -> list[float]:
    latencies: list[float] = []
    end = trio.current_time() + duration_s

    async def worker() -> None:
        while trio.current_time() < end:
            start = trio.current_time()
            await driver.pay()
            if trio.current_time() <= end:
                latencies.append(trio.current_time() - start)

    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)
    return latencies


async def open_loop(driver: Driver, rate_per_s: float, duration_s: float) -> list[float]:
    latencies: list[float] = []
    start = trio.current_time()
    end = start + duration_s

    async def one(due: float) -> None:
        await driver.pay()
        if trio.current_time() <= end:
            latencies.append(trio.current_time() - due)

    async with trio.open_nursery() as nursery:
        n = 0
        while True:
            due = start + n / rate_per_s
            if due >= end:
                break
            await trio.sleep_until(due)
            nursery.start_soon(one, due)
            n += 1
        await trio.sleep_until(end)
        nursery.cancel_scope.cancel()  # payments still in flight are not counted
    return latencies


@asynccontextmanager
async def open_store(kind: str, dsn: str | None) -> AsyncIterator[Any]:
    if kind == "memory":
        yield MemoryStore(checkpoint=trio.lowlevel.checkpoint)
        return
    from engine.store.postgres import open_postgres_store

    assert dsn is not None
    async with open_postgres_store(dsn, pool_size_max=POOL_SIZE_MAX) as store:
        yield store


def units_of(store: Any) -> int:
    if isinstance(store, MemoryStore):
        return int(store.commits)
    stats = store.statistics()
    return int(stats.units_committed + stats.units_rolled_back)


async def run_store(
    kind: str, dsn: str | None, server_pid: int | None, plan: list[tuple[str, float]], args: Any
) -> list[dict[str, Any]]:
    counter = install_statement_counter()
    loop_counts = LoopCounts()
    trio.lowlevel.add_instrument(loop_counts)
    crossings = [0]
    results = []
    async with open_store(kind, dsn) as store:
        bridge = getattr(store, "_bridge", None)
        if bridge is not None:  # every crossing into asyncio goes through bridge.run
            bridge.run = counting(bridge.run, crossings)
        clock = TrioClock(EPOCH_MS)
        psp = FakePsp(clock)
        config = EngineConfig(outbox_poll_interval_s=30.0, actor_idle_timeout_s=5.0)
        ids = Ids(clock, random.Random(time.monotonic_ns()))
        driver: Driver | None = None

        async def on_completed(delivery: Delivery) -> None:
            assert driver is not None
            await driver.on_completed(delivery)

        watcher = Subscriber("bench", ("payment.completed",), on_completed, inline=True)
        async with (
            open_engine(
                store, psp, clock, ids, random.Random(1), config, extra_subscribers=(watcher,)
            ) as engine,
            trio.open_nursery() as nursery,
        ):
            driver = Driver(engine, psp, args.orders_max)
            nursery.start_soon(driver.pump)
            await closed_loop(driver, 8, WARMUP_S)
            for mode, level in plan:
                gc.collect()
                before = (
                    time.process_time(),
                    postgres_cpu_s(server_pid),
                    counter.statements,
                    units_of(store),
                    crossings[0],
                    loop_counts.steps,
                    loop_counts.turns,
                    driver.completed,
                    thread_cpu_s(BRIDGE_THREAD),
                )
                started = time.perf_counter()
                if mode == "closed":
                    latencies = await closed_loop(driver, int(level), args.duration_s)
                else:
                    latencies = await open_loop(driver, level, args.duration_s)
                wall_s = time.perf_counter() - started
                after = (
                    time.process_time(),
                    postgres_cpu_s(server_pid),
                    counter.statements,
                    units_of(store),
                    crossings[0],
                    loop_counts.steps,
                    loop_counts.turns,
                    driver.completed,
                    thread_cpu_s(BRIDGE_THREAD),
                )
                d = [a - b for a, b in zip(after, before, strict=True)]
                done = max(1, int(d[7]))
                latencies.sort()
                ms = [round(1000 * quantile(latencies, q), 2) for q in (0.5, 0.99, 0.999)]
                result = {
                    "label": args.label,
                    "store": kind,
                    "mode": mode,
                    "level": level,
                    "payments": int(d[7]),
                    "payments_per_s": round(d[7] / wall_s, 1),
                    "p50_ms": ms[0],
                    "p99_ms": ms[1],
                    "p999_ms": ms[2],
                    "engine_cpu_ms": round(1000 * d[0] / done, 3),
                    "engine_cpu_pct": round(100 * d[0] / wall_s, 1),
                    "bridge_thread_cpu_ms": round(1000 * d[8] / done, 3),
                    "postgres_cpu_ms": round(1000 * d[1] / done, 3),
                    "statements": round(d[2] / done, 2),
                    "units_of_work": round(d[3] / done, 2),
                    "bridge_crossings": round(d[4] / done, 2),
                    "task_steps": round(d[5] / done, 1),
                    "loop_turns": round(d[6] / done, 1),
                }
                print(json.dumps(result), flush=True)
                results.append(result)
                await trio.sleep(COOL_DOWN_S)
            nursery.cancel_scope.cancel()
    trio.lowlevel.remove_instrument(loop_counts)
    return results


def _numbers(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def prepare_database() -> tuple[str, int | None]:
    """A fresh bench database on the embedded server (or DATABASE_URL's), durable commits."""
    from payengine.database import resolve_database_url

    admin = resolve_database_url()
    dsn = fresh_database(admin, BENCH_DATABASE)

    async def settings(conn_dsn: str) -> tuple[str, str]:
        import asyncpg

        conn = await asyncpg.connect(conn_dsn)
        try:
            return (
                await conn.fetchval("SHOW synchronous_commit"),
                await conn.fetchval("SHOW fsync"),
            )
        finally:
            await conn.close()

    sync, fsync = run_asyncio(settings(dsn))
    assert sync == "on" and fsync == "on", f"durable commits needed: {sync=} {fsync=}"
    return dsn, server_pid_of(dsn)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    gc.set_threshold(*GC_THRESHOLDS)
    parser = argparse.ArgumentParser(prog="python -m bench.pg_bench")
    parser.add_argument("--store", default="postgres,memory")
    parser.add_argument("--duration-s", type=float, default=8.0)
    parser.add_argument("--concurrency", type=_numbers, default=[16.0])
    parser.add_argument("--rate", type=_numbers, default=[])
    parser.add_argument("--orders-max", type=int, default=3)
    parser.add_argument("--label", default="")
    parser.add_argument("--json", help="append every result line to this file")
    args = parser.parse_args(argv)
    plan = [("closed", c) for c in args.concurrency] + [("open", r) for r in args.rate]
    results: list[dict[str, Any]] = []
    for kind in args.store.split(","):
        dsn, pid = prepare_database() if kind == "postgres" else (None, None)
        results += trio.run(run_store, kind, dsn, pid, plan, args)
    if args.json:
        with open(args.json, "a") as out:
            for result in results:
                out.write(json.dumps(result) + "\n")
    return results


if __name__ == "__main__":
    main()


__all__ = ["bisect", "main"]
