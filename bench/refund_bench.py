"""`python -m bench.refund_bench [--orders N]`: the fake PSP's refunds, calls per wall second.

Figures for N captured orders at the in-process fake PSP (no latency, no faults, virtual
time): captures (the baseline), a partial refund of each, the same refund again (an
idempotent replay), a refusal (more than is left), and the Stripe report of the day with a
capture and a refund row per order. The ratios to captures say what refunds cost next to
the call the engine already makes per order; the fake PSP must never be the bottleneck of a
simulated day.
"""

from __future__ import annotations

import argparse
import time

import trio

from actors.clock import TrioClock
from engine.gateway import CaptureStatus, PspRefundStatus
from engine.money import Money
from engine.reconciliation import parse, write_stripe
from simulator.fake_psp import FakePsp
from simulator.psp_reports import DAY_MS, psp_lines
from simulator.virtual_clock import virtual_clock

EPOCH_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


async def _run(orders: int) -> dict[str, float]:
    psp = FakePsp(TrioClock(EPOCH_MS), webhook_queue_max=4 * orders + 16)
    amount = Money(10_000, "USD")
    sessions = []
    for i in range(orders):
        registration = await psp.register_checkout(f"pay_{i}", amount, None)
        psp.buyer_pays(registration.session_id)
        sessions.append(registration.session_id)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    captures = [
        await psp.capture(f"ord_{i}", session, amount) for i, session in enumerate(sessions)
    ]
    seconds["capture"] = time.perf_counter() - t0
    assert all(c.status is CaptureStatus.CAPTURED and c.capture_id for c in captures)
    ids = [str(c.capture_id) for c in captures]
    part = Money(2_500, "USD")
    for name, key, minor in (("refund", "rf", 2_500), ("refund replay", "rf", 2_500)):
        t0 = time.perf_counter()
        for i, capture_id in enumerate(ids):
            result = await psp.refund(f"{key}_{i}", capture_id, Money(minor, "USD"))
            assert result.status is PspRefundStatus.SUCCEEDED
        seconds[name] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i, capture_id in enumerate(ids):
        refused = await psp.refund(f"rf_over_{i}", capture_id, amount - part + Money(1, "USD"))
        assert refused.refund_id is None
    seconds["refusal"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    data = write_stripe(psp_lines(psp, EPOCH_MS, EPOCH_MS + DAY_MS, "20260101"))
    seconds["settlement file"] = time.perf_counter() - t0
    parsed = parse(data)
    assert len(parsed.lines) == 2 * orders
    assert parsed.totals[0].gross.minor == orders * (amount.minor - part.minor)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.refund_bench")
    parser.add_argument("--orders", type=int, default=50_000)
    orders = parser.parse_args().orders
    seconds = trio.run(_run, orders, clock=virtual_clock())
    base = seconds["capture"]
    print(f"fake PSP refunds: {orders:,} captured orders, one partial refund each")
    for name, s in seconds.items():
        print(f"  {name:<16} {s:6.2f} s  {orders / s:>10,.0f} /s  ({s / base:4.2f}x capture)")


if __name__ == "__main__":
    main()
