"""The no-Python ceiling: payengine's own statements per payment, replayed by `pgbench`.

    PAYENGINE_DATA_DIR=... python -m bench.pg_ceiling [--record-concurrency 16] [--clients 16]

1. Record: the engine bench (bench/pg_bench.py) runs a closed loop on PostgreSQL with every
   statement recorded with its arguments and its connection; a window of N payments is kept.
2. Replay script: the window's transactions (BEGIN .. COMMIT on one connection, or one
   autocommit statement), in commit order, with arguments written as literals and every id
   (payments, orders, messages, transactions, PSP ids, checkouts) given a per-execution
   suffix, so each execution of the script writes N new payments with the same statements,
   the same rows per statement and the same hot rows (the sellers' wallets) as the engine.
3. `pgbench -n -M simple -f script -c C -T D`: scripts per second x N = payments per second
   the database takes with no Python in front of it, at C connections (the ceiling).

The ratio engine payments/s / ceiling payments/s is the "share of the ceiling". pgbench runs
here with the same durable commits; its own CPU is reported too (it is the client).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tempfile
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trio

from bench import pg_bench
from bench.pg_counts import install_statement_counter, postgres_cpu_s

#: Ids that name one payment's rows (payengine's base32 ids, the fake PSP's, the bench's
#: checkouts and buyers), in argument values: these get the per-execution suffix.
_ID_IN_TEXT = re.compile(r"\b(?:[a-z]{2,6}_[0-9A-Z]{10,}|chk-[0-9]+-[0-9]+|buyer-\d+)\b")
_PLACEHOLDER = re.compile(r"\$(\d+)")
SUFFIX = "-:r"


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple):
        items = ",".join(
            "NULL" if v is None else '"' + str(v).replace('"', '\\"') + '"' for v in value
        )
        return _quote(_unique("{" + items + "}"))
    if isinstance(value, dict):
        return _quote(_unique(json.dumps(value, separators=(",", ":"))))
    return _quote(_unique(str(value)))


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _unique(sql: str) -> str:
    return _ID_IN_TEXT.sub(lambda m: m.group(0) + SUFFIX, sql)


def statement_sql(query: str, args: tuple[Any, ...]) -> str:
    text = _PLACEHOLDER.sub(lambda m: _literal(args[int(m.group(1)) - 1]), query)
    return " ".join(text.split())


def build_script(record: list[tuple[int, str, str, tuple[Any, ...]]]) -> tuple[str, int, int]:
    """The pgbench script of a recorded window: (script, transactions, statements)."""
    open_txn: dict[int, list[str]] = {}
    ordered: list[list[str]] = []
    for conn, _, query, args in record:
        sql = statement_sql(query, args)
        head = sql.split(" ", 1)[0].rstrip(";").upper()
        if head == "BEGIN":
            open_txn[conn] = [sql]
        elif head in ("COMMIT", "ROLLBACK") and conn in open_txn:
            ordered.append([*open_txn.pop(conn), sql])
        elif conn in open_txn:
            open_txn[conn].append(sql)
        else:
            ordered.append([sql])
    lines = ["\\set r random(1, 9000000000000000)"]
    statements = 0
    for txn in ordered:
        for sql in txn:
            lines.append(sql.rstrip(";") + ";")
            statements += 1
    return "\n".join(lines) + "\n", len(ordered), statements


def record_window(concurrency: int, duration_s: float) -> tuple[list[Any], int]:
    """Run the engine bench once, recording every statement of one measured window."""
    counter = install_statement_counter()
    recorded: list[Any] = []
    window_payments = [0]
    original = pg_bench.closed_loop

    async def recording_loop(driver: Any, level: int, seconds: float) -> list[float]:
        if level != concurrency or counter.record is not None or window_payments[0]:
            return await original(driver, level, seconds)
        await original(driver, level, 1.0)  # settle at this concurrency first
        counter.record = []
        before = driver.completed
        latencies = await original(driver, level, seconds)
        await trio.sleep(1.0)  # let the window's last payments finish their statements
        recorded.extend(counter.record)
        counter.record = None
        window_payments[0] = driver.completed - before
        return latencies

    pg_bench.closed_loop = recording_loop
    try:
        pg_bench.main(
            ["--store", "postgres", "--duration-s", str(duration_s),
             "--concurrency", str(concurrency), "--label", "recording"]
        )  # fmt: skip
    finally:
        pg_bench.closed_loop = original
    return recorded, window_payments[0]


def run_pgbench(dsn: str, script: str, clients: int, duration_s: float) -> dict[str, Any]:
    parts = urlsplit(dsn)
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or "127.0.0.1"])[0]
    port = str(query.get("port", [parts.port or 5432])[0])
    database = parts.path.lstrip("/")
    user = parts.username or "postgres"
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(script)
        path = f.name
    command = ["pgbench", "-n", "-M", "simple", "-h", host, "-p", port, "-U", user]
    command += ["-c", str(clients), "-j", str(min(clients, 2)), "-T", str(round(duration_s))]
    command += ["-f", path, database]
    server_pid = pg_bench.server_pid_of(dsn)
    pg_before, started = postgres_cpu_s(server_pid), time.perf_counter()
    child_before = os.times()
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    child_after = os.times()
    wall_s = time.perf_counter() - started
    os.unlink(path)
    if out.returncode != 0:
        raise SystemExit(f"pgbench failed: {out.stderr[-2000:]}")
    tps = float(re.search(r"tps = ([0-9.]+)", out.stdout).group(1))  # type: ignore[union-attr]
    return {
        "scripts_per_s": tps,
        "postgres_cpu_s": postgres_cpu_s(server_pid) - pg_before,
        "pgbench_cpu_s": (child_after.children_user + child_after.children_system)
        - (child_before.children_user + child_before.children_system),
        "wall_s": wall_s,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_ceiling")
    parser.add_argument("--record-concurrency", type=int, default=16)
    parser.add_argument("--record-s", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration-s", type=float, default=8.0)
    parser.add_argument("--json", help="append the result line to this file")
    parser.add_argument("--script-out", help="keep the pgbench script here")
    args = parser.parse_args(argv)
    record, payments = record_window(args.record_concurrency, args.record_s)
    assert payments > 0, "no payment completed in the recorded window"
    rows = [(conn, name, query, a) for name, query, a, conn in record]
    script, transactions, statements = build_script(rows)
    if args.script_out:
        with open(args.script_out, "w") as out:
            out.write(script)
    dsn, _ = pg_bench.prepare_database()
    from bench.pg_counts import run_asyncio

    run_asyncio(_migrate(dsn))
    result = run_pgbench(dsn, script, args.clients, args.duration_s)
    per_payment = result["scripts_per_s"] * payments
    paid = max(1.0, per_payment * result["wall_s"])
    line = {
        "label": "pgbench ceiling",
        "recorded_payments": payments,
        "statements_per_payment": round(statements / payments, 2),
        "transactions_per_payment": round(transactions / payments, 2),
        "clients": args.clients,
        "payments_per_s": round(per_payment, 1),
        "postgres_cpu_ms": round(1000 * result["postgres_cpu_s"] / paid, 3),
        "pgbench_cpu_ms": round(1000 * result["pgbench_cpu_s"] / paid, 3),
    }
    print(json.dumps(line), flush=True)
    if args.json:
        with open(args.json, "a") as out:
            out.write(json.dumps(line) + "\n")
    return line


async def _migrate(dsn: str) -> None:
    import asyncpg

    from engine.store import migrate

    conn = await asyncpg.connect(dsn)
    try:
        await migrate.migrate(conn)
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
