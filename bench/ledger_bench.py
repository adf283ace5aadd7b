"""The ledger alone: postings per second through the PostgreSQL store, beside plain SQL.

    PAYENGINE_DATA_DIR=... python -m bench.ledger_bench [--hot 0,1,10] [--concurrency 16]

A posting is one capture transaction (Dr psp_clearing / Cr merchant_payable / Cr
platform_revenue, and the seller's wallet credited), one unit of work each, as the order actor
books a capture. `--hot 0`: every posting to its own seller (no two postings share a wallet
row); `--hot K`: every posting to one of K sellers (K hot wallet rows, locked FOR UPDATE until
commit). Beside it, the same statements (recorded from one posting) as plain SQL through
`pgbench` with the same concurrency and the same hot rows: the no-Python baseline.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from typing import Any

import trio

from bench import pg_bench
from bench.pg_ceiling import build_script, run_pgbench
from bench.pg_counts import COUNTER, install_statement_counter
from engine.ledger import Transaction, TransactionKind, capture_entries
from engine.money import Money

COMMISSION_BPS = 1_000


def posting(seq: int, seller: str) -> Transaction:
    entries, _, _ = capture_entries(seller, Money(1_000, "USD"), COMMISSION_BPS)
    return Transaction(
        txn_id=f"txn_{seq:012d}X",
        kind=TransactionKind.CAPTURE,
        reference=f"ord_{seq:012d}X",
        entries=entries,
        created_at_ms=1_000 + seq,
    )


async def store_postings(
    dsn: str, hot: int, concurrency: int, duration_s: float, batched: bool = True
) -> dict[str, Any]:
    from engine.store.postgres import open_postgres_store

    seq = itertools.count(int(time.time() * 1000) % 10**9 * 1000)
    done = 0
    async with open_postgres_store(dsn, pool_size_max=max(concurrency, 2)) as store:
        end = trio.current_time() + duration_s
        started_cpu, started = time.process_time(), time.perf_counter()

        async def worker() -> None:
            nonlocal done
            while trio.current_time() < end:
                n = next(seq)
                seller = f"seller-{n % hot}" if hot else f"seller-u{n}"
                # As the order actor books a capture: a write-behind unit, group-committed.
                unit = store.batched_unit_of_work() if batched else store.unit_of_work()
                async with unit as uow:
                    await uow.post_transaction(posting(n, seller))
                done += 1

        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)
        wall_s, cpu_s = time.perf_counter() - started, time.process_time() - started_cpu
    return {
        "postings_per_s": round(done / wall_s, 1),
        "engine_cpu_ms": round(1000 * cpu_s / max(1, done), 3),
    }


async def record_one(dsn: str) -> list[Any]:
    from engine.store.postgres import open_postgres_store

    install_statement_counter()
    async with open_postgres_store(dsn) as store:
        COUNTER.record = []
        async with store.unit_of_work() as uow:
            await uow.post_transaction(posting(1, "seller-HOTSEAT"))
        recorded, COUNTER.record = COUNTER.record, None
    return [(conn, name, query, a) for name, query, a, conn in recorded]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(prog="python -m bench.ledger_bench")
    parser.add_argument("--hot", default="0,1,10")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration-s", type=float, default=5.0)
    parser.add_argument("--label", default="")
    parser.add_argument(
        "--interactive", action="store_true", help="one transaction per posting (no batching)"
    )
    parser.add_argument("--json", help="append every result line to this file")
    args = parser.parse_args(argv)
    results = []
    dsn, _ = pg_bench.prepare_database()
    script, _, _ = build_script(trio.run(record_one, dsn))
    for hot in [int(h) for h in args.hot.split(",")]:
        line: dict[str, Any] = {"label": args.label, "bench": "ledger", "hot_accounts": hot}
        line["concurrency"] = args.concurrency
        line.update(
            trio.run(
                store_postings, dsn, hot, args.concurrency, args.duration_s, not args.interactive
            )
        )
        # The same statements as plain SQL: the seller is the script's own hot set.
        seller = "seller-:s" if hot else "seller-u:s"
        pick = f"\\set s random(0, {max(hot, 1) - 1})" if hot else "\\set s random(1, 1000000000)"
        plain = pick + "\n" + script.replace("seller-HOTSEAT", seller)
        sql = run_pgbench(dsn, plain, args.concurrency, args.duration_s)
        line["plain_sql_postings_per_s"] = round(sql["scripts_per_s"], 1)
        line["share_of_plain_sql"] = round(line["postings_per_s"] / sql["scripts_per_s"], 3)
        print(json.dumps(line), flush=True)
        results.append(line)
    if args.json:
        with open(args.json, "a") as out:
            for result in results:
                out.write(json.dumps(result) + "\n")
    return results


if __name__ == "__main__":
    main()
