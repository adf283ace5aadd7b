"""`python -m bench.settlement_bench [--rows N]`: settlement files, rows per wall second.

Three figures for one file of N capture rows in four currencies (0, 2 and 3 decimals): build
and render it (what the simulator does every virtual midnight), parse it strictly (what
reconciliation will do every night), and corrupt it with every fault on. 1M payments a day,
the source's volume, is about 3M rows (one per order); the parse figure says how long a night's
file takes to read.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import time

from engine.money import Money
from simulator.corruption import CorruptionPlan
from simulator.settlement import (
    DAY_MS,
    Movement,
    MovementKind,
    SettlementFile,
    build_settlement,
    day_start_ms,
    render_settlement,
)
from simulator.settlement_desk import corrupt_settlement
from simulator.settlement_parse import parse_settlement


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.settlement_bench")
    parser.add_argument("--rows", type=int, default=100_000)
    rows = parser.parse_args().rows
    date = dt.date(2026, 1, 1)
    start_ms = day_start_ms(date)
    rng = random.Random(1)
    moves = [
        Movement(
            f"cap_{i:010d}",
            f"ord_{i:026d}",
            MovementKind.CAPTURE,
            start_ms + rng.randrange(DAY_MS),
            Money(rng.randint(100, 10**6), rng.choice(["USD", "EUR", "JPY", "BHD"])),
        )
        for i in range(rows)
    ]
    t0 = time.perf_counter()
    built = build_settlement(moves, date)
    data = render_settlement(built)
    t1 = time.perf_counter()
    parsed = parse_settlement(data)
    t2 = time.perf_counter()
    plan = CorruptionPlan(0.01, 0.01, 0.01, 0.01, 1.0, 0.0, 0.0, 1.0)
    corrupt_settlement(built, random.Random(2), plan)
    t3 = time.perf_counter()
    assert isinstance(parsed, SettlementFile) and parsed == built
    print(f"settlement file: {rows:,} rows, {len(data) / 1e6:.1f} MB")
    for name, seconds in (("build+render", t1 - t0), ("parse", t2 - t1), ("corrupt", t3 - t2)):
        print(f"  {name:<13} {seconds:6.2f} s  {rows / seconds:>10,.0f} rows/s")


if __name__ == "__main__":
    main()
