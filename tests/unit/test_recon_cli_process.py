"""`payengine reconcile FILE` as a real process against the embedded PostgreSQL: it runs the
file through the engine (the reconciler, its fee contract and window, and its repairs by the
order actor), `--dry-run` writes nothing, and the exit codes are 0 / 1 / 2 with one located
line on stderr for an unusable file or option."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
import trio

from engine.ids import Ids
from engine.ledger import Transaction, TransactionKind, capture_entries
from engine.money import Money
from engine.reconciliation import Format, LineKind, SettlementLine, write_stripe
from engine.records import evolve
from engine.states import OrderStatus
from engine.store.postgres import open_postgres_store
from tests import pgfixtures
from tests.factories import payment_with_orders

T_MS = 1_767_261_600_000  # 2026-01-01 10:00 UTC
ROOT = Path(__file__).resolve().parents[2]
PROCESS_TIMEOUT_S = 120


class _At:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def now_ms(self) -> int:
        return self.ms

    def monotonic_s(self) -> float:
        return self.ms / 1000


def _capture(order_id: str, minor: int, fee: int) -> SettlementLine:
    gross, cost = Money(minor, "USD"), Money(fee, "USD")
    return SettlementLine(
        source=Format.STRIPE,
        line_number=1,
        kind=LineKind.CAPTURE,
        reference=order_id,
        psp_reference=f"txn_{order_id}",
        order_reference=order_id,
        gross=gross,
        fee=cost,
        net=gross - cost,
        batch="po_20260101_usd",
        booked_at_ms=T_MS,
        value_at_ms=None,
    )


async def _seed(dsn: str) -> dict[str, str]:
    """Four USD orders: a, b, d captured and booked at T; c EXECUTING (its answer lost)."""
    ids = Ids(_At(T_MS), random.Random(7))
    payment, orders = payment_with_orders([10_000, 5_000, 2_000, 3_000])
    names = dict(zip("abcd", (o.order_id for o in orders), strict=True))
    states = [OrderStatus.SUCCESS, OrderStatus.SUCCESS, OrderStatus.EXECUTING, OrderStatus.SUCCESS]
    orders = [
        evolve(o, status=s, ledger_booked=s is OrderStatus.SUCCESS, wallet_booked=False)
        for o, s in zip(orders, states, strict=True)
    ]
    async with open_postgres_store(dsn) as store, store.unit_of_work() as uow:
        await uow.insert_payment(payment, orders)
        for order in orders:
            if order.status is OrderStatus.SUCCESS:
                entries, _, _ = capture_entries(order.seller_id, order.amount, 1000)
                txn = Transaction(
                    ids.new("txn"), TransactionKind.CAPTURE, order.order_id, entries, T_MS
                )
                await uow.post_transaction(txn)
    return names


async def _settled(dsn: str, references: list[str]) -> dict[str, bool]:
    async with open_postgres_store(dsn, migrate=False) as store, store.unit_of_work() as uow:
        return {
            ref: await uow.get_transaction_by_reference(TransactionKind.SETTLEMENT, ref) is not None
            for ref in references
        }


async def _runs(dsn: str) -> int:
    async with open_postgres_store(dsn, migrate=False) as store:
        return len(await store.list_recon_items(1000))


def _reconcile(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": dsn, "PAYENGINE_PSP_URL": "http://127.0.0.1:9"}
    return subprocess.run(
        [sys.executable, "-m", "payengine", "reconcile", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=PROCESS_TIMEOUT_S,
        check=False,
    )


@pytest.mark.postgres
def test_reconcile_runs_the_file_through_the_engine(tmp_path: Path) -> None:
    dsn, name = pgfixtures.create_database_sync("embedded")
    try:
        o = trio.run(_seed, dsn)
        # a: the fee is 0.01 above the contract's 2.9% + 0.30; b: missing; c: never heard of;
        # d: as expected.
        lines = [_capture(o["a"], 10_000, 321), _capture(o["c"], 2_000, 88)]
        lines.append(_capture(o["d"], 3_000, 117))
        report = tmp_path / "stripe_2026-01-01.csv"
        report.write_bytes(write_stripe([attrs.evolve(ln) for ln in lines]))
        contract = ["--fee-bps", "290", "--fee-fixed", "USD=30", "--window", "2026-01-01"]

        dry = _reconcile(dsn, str(report), "--dry-run", *contract)
        assert dry.returncode == 1, dry.stderr
        assert "dry run (nothing written)" in dry.stdout and "repairs:" not in dry.stdout
        assert trio.run(_runs, dsn) == 0
        assert trio.run(_settled, dsn, list(o.values())) == {ref: False for ref in o.values()}

        done = _reconcile(dsn, str(report), *contract)
        assert done.returncode == 1, done.stderr
        out = done.stdout
        rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[4:8]}
        assert rows == {"matched": "1", "auto_fixed": "1", "manual_review": "1", "investigate": "1"}
        assert f"{o['a']}  manual_review  fee_differs" in out
        assert f"{o['b']}  investigate  missing_from_file" in out
        # The repair went to the order actor, which asked the PSP (unreachable here: the
        # order stays EXECUTING for the running engine's poll, as after a timeout).
        assert f"QueryCapture for {o['c']}: unknown" in out
        settled = trio.run(_settled, dsn, list(o.values()))
        assert settled == {o["a"]: False, o["b"]: False, o["c"]: True, o["d"]: True}

        again = _reconcile(dsn, str(report), *contract)
        assert again.returncode == 1 and "already run" in again.stdout

        damaged = tmp_path / "damaged.csv"
        damaged.write_bytes(report.read_bytes().replace(b"charge", b"chorge", 1))
        bad = _reconcile(dsn, str(damaged))
        assert bad.returncode == 2 and bad.stdout == ""
        assert bad.stderr.count("\n") == 1 and "damaged.csv: line 2, column 8:" in bad.stderr

        option = _reconcile(dsn, str(report), "--window", "2026-13-01")
        assert option.returncode == 2 and option.stderr.count("\n") == 1
        assert "--window" in option.stderr

        clean = tmp_path / "clean.csv"
        clean.write_bytes(write_stripe([]))
        assert _reconcile(dsn, str(clean), "--format", "stripe").returncode == 0
    finally:
        pgfixtures.drop_database_sync("embedded", name)
