"""Memory of the engine with many payments in flight on PostgreSQL (issue 15: RSS <= 1 GB at
100k in flight).

    PAYENGINE_DATA_DIR=... python -m bench.pg_rss [--payments 3000] [--concurrency 32]

Creates N checkouts on the engine (each registered with the in-process fake PSP, so AWAITING
the buyer: an expiry timer each, actors passivated once idle) and nobody pays; prints the
process's RSS before, right after, and once the actors passivated, per payment in flight and
extrapolated linearly to 100,000. The database holds the payments; this is the engine's side.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import time

import psutil
import trio

from actors.clock import TrioClock
from actors.engine import open_engine
from actors.service import CreateCheckout, OrderLine, PaymentView
from bench.pg_bench import EPOCH_MS, GC_THRESHOLDS, POOL_SIZE_MAX, SELLERS, prepare_database
from engine.ids import Ids
from engine.limits import EngineConfig
from simulator.fake_psp import FakePsp

TARGET_IN_FLIGHT = 100_000
#: The engine's idle timeout here; the wait for passivation is a little longer.
IDLE_TIMEOUT_S = 5.0


def rss_mb() -> float:
    return float(psutil.Process().memory_info().rss) / 2**20


async def run(dsn: str, payments: int, concurrency: int) -> dict[str, float]:
    from engine.store.postgres import open_postgres_store

    clock = TrioClock(EPOCH_MS)
    psp = FakePsp(clock)
    config = EngineConfig(outbox_poll_interval_s=30.0, actor_idle_timeout_s=IDLE_TIMEOUT_S)
    ids = Ids(clock, random.Random(time.monotonic_ns()))
    async with (
        open_postgres_store(dsn, pool_size_max=POOL_SIZE_MAX) as store,
        open_engine(store, psp, clock, ids, random.Random(1), config) as engine,
    ):
        gc.collect()
        before = rss_mb()
        next_index = iter(range(payments))

        async def creator() -> None:
            for i in next_index:
                lines = tuple(
                    OrderLine(f"seller-{(i + k) % SELLERS}", 100 + k) for k in range(1 + i % 3)
                )
                view = await engine.service.create_checkout(
                    CreateCheckout(f"rss-{i}-{time.monotonic_ns()}", f"buyer-{i}", "USD", lines)
                )
                assert isinstance(view, PaymentView)

        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(creator)
        created_s = time.perf_counter() - started
        gc.collect()
        loaded = rss_mb()
        await trio.sleep(IDLE_TIMEOUT_S * 2.5)  # the actors passivate
        gc.collect()
        idle = rss_mb()
        stats = engine.system.statistics()
    per_payment_kb = 1024 * (idle - before) / payments
    return {
        "payments_in_flight": payments,
        "create_per_s": round(payments / created_s, 1),
        "rss_mb_before": round(before, 1),
        "rss_mb_after_create": round(loaded, 1),
        "rss_mb_after_passivation": round(idle, 1),
        "kb_per_payment_in_flight": round(per_payment_kb, 2),
        "rss_mb_at_100k_extrapolated": round(before + per_payment_kb * TARGET_IN_FLIGHT / 1024, 0),
        "actors_live_after_passivation": float(stats.live_actors),
        "actors_peak": float(stats.peak_actors),
    }


def main(argv: list[str] | None = None) -> dict[str, float]:
    gc.set_threshold(*GC_THRESHOLDS)
    parser = argparse.ArgumentParser(prog="python -m bench.pg_rss")
    parser.add_argument("--payments", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    dsn, _ = prepare_database()
    result = trio.run(run, dsn, args.payments, args.concurrency)
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
