"""`python -m bench`: full payments (checkout -> capture -> booked) per wall second, memory mode.

Two figures:

- `engine`: N checkouts with `concurrency_max` in flight, each paid on the hosted page at once;
  the PSP answers without latency or faults and its webhooks are delivered as they come. A
  payment counts when it is COMPLETED, i.e. every order captured and booked in the ledger and
  the wallet. This is the engine's own throughput: the figure the issue's 5,000/s aims at.
- `scenario`: the `happy_path` scenario through the full simulator (latency, buyers thinking,
  webhooks, the oracle at every commit), payments per wall second of the whole run.

Both run in virtual time (MockClock, autojump) on one core, with deterministic scheduling.
`--profile` prints the top of a cProfile of the engine run.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import random
import sys
import time

import attrs
import trio

from actors.clock import TrioClock
from actors.engine import open_engine
from actors.outbox import Subscriber
from actors.service import CreateCheckout, OrderLine, PaymentView
from engine.gateway import PspNotification
from engine.ids import Ids
from engine.limits import EngineConfig
from engine.records import Delivery
from engine.states import PaymentStatus
from engine.store.memory import MemoryStore
from scenarios import load_scenario
from simulator.determinism import deterministic_scheduling
from simulator.fake_psp import FakePsp
from simulator.runner import run_scenario, scaled
from simulator.virtual_clock import virtual_clock

EPOCH_MS = 1_767_225_600_000
SELLERS = 50
#: How long (virtual seconds) the engine run may take before the bench calls it stuck.
ENGINE_RUN_S_MAX = 24 * 3600.0
WEBHOOK_ATTEMPTS_MAX = 100


@attrs.frozen
class EngineRun:
    """What one engine run did: completed payments, units of work, actor messages, orders,
    and incarnations started per actor kind (each reloads its state from the store)."""

    completed: int
    commits: int
    messages: int
    orders: int
    spawned_by_kind: dict[str, int]


class TaskSteps(trio.abc.Instrument):
    """Counts trio task steps (one per resumption of a task), to compare runs without timing."""

    def __init__(self) -> None:
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps += 1


async def engine_run(payments: int, concurrency_max: int, orders_max: int) -> EngineRun:
    """Run `payments` checkouts to COMPLETED; returns what the run did."""
    clock = TrioClock(EPOCH_MS)
    store = MemoryStore(checkpoint=trio.lowlevel.checkpoint)
    psp = FakePsp(clock)
    config = EngineConfig(outbox_poll_interval_s=30.0, actor_idle_timeout_s=5.0)
    rng = random.Random(1)
    limit = trio.Semaphore(concurrency_max)
    completed = 0
    all_done = trio.Event()

    async def on_completed(delivery: Delivery) -> None:
        """A payment is COMPLETED (every order captured and booked): free its slot."""
        nonlocal completed
        completed += 1
        limit.release()
        if completed == payments:
            all_done.set()

    watcher = Subscriber("bench", ("payment.completed",), on_completed, inline=True)
    ids = Ids(clock, random.Random(2))
    async with (
        open_engine(store, psp, clock, ids, rng, config, extra_subscribers=(watcher,)) as engine,
        trio.open_nursery() as nursery,
    ):

        async def deliver(event: PspNotification) -> None:
            for _ in range(WEBHOOK_ATTEMPTS_MAX):  # the PSP redelivers until acknowledged
                if await engine.service.handle_psp_event(event) != "retry_later":
                    return
                await trio.sleep(1)

        async def pump() -> None:
            async with trio.open_nursery() as deliveries:
                async for event in psp.webhook_receive:
                    deliveries.start_soon(deliver, event)

        async def buy(i: int) -> None:
            lines = tuple(
                OrderLine(f"seller-{(i + k) % SELLERS}", 100 + (i * 7 + k) % 5_000)
                for k in range(1 + i % orders_max)
            )
            view = await engine.service.create_checkout(
                CreateCheckout(f"chk-{i}", f"buyer-{i}", "USD", lines)
            )
            assert isinstance(view, PaymentView) and view.payment.psp_session_id
            psp.buyer_pays(view.payment.psp_session_id)

        nursery.start_soon(pump)
        with trio.fail_after(ENGINE_RUN_S_MAX):
            for i in range(payments):
                await limit.acquire()
                nursery.start_soon(buy, i)
            await all_done.wait()
        nursery.cancel_scope.cancel()
        statistics = engine.system.statistics()
    assert all(p.status is PaymentStatus.COMPLETED for p in await store.list_payments(1000))
    orders = sum(1 + i % orders_max for i in range(payments))
    return EngineRun(
        completed, store.commits, statistics.messages_handled, orders, statistics.spawned_by_kind
    )


def bench_engine(
    payments: int, concurrency_max: int, orders_max: int, profile: bool, counts: bool
) -> float:
    profiler = cProfile.Profile() if profile else None
    steps = TaskSteps()
    instruments = [steps] if counts else []
    start = time.perf_counter()
    start_cpu = time.process_time()
    with deterministic_scheduling(1):
        if profiler is not None:
            profiler.enable()
        run = trio.run(
            engine_run,
            payments,
            concurrency_max,
            orders_max,
            clock=virtual_clock(),
            instruments=instruments,
        )
        if profiler is not None:
            profiler.disable()
    wall_s = time.perf_counter() - start
    cpu_s = time.process_time() - start_cpu
    done = run.completed
    rate = done / wall_s
    print(
        f"engine:   {done:,} payments (1..{orders_max} orders each, {concurrency_max} in flight)"
        f" in {wall_s:.1f} s wall = {rate:,.0f} payments/s;"
        f" {cpu_s:.1f} s CPU = {done / cpu_s:,.0f} payments/CPU s"
    )
    per = f"per payment ({run.orders / done:.2f} orders):"
    print(
        f"          {per} {run.commits / done:.2f} units of work,"
        f" {run.messages / done:.2f} actor messages"
        + (f", {steps.steps / done:.1f} task steps" if counts else "")
    )
    if counts:
        starts = ", ".join(
            f"{kind} {n / done:.2f}" for kind, n in sorted(run.spawned_by_kind.items())
        )
        print(f"          actor incarnations per payment: {starts}")
    if profiler is not None:
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(25)
        if os.environ.get("BENCH_PROFILE_OUT"):  # the whole profile, for pstats
            profiler.dump_stats(os.environ["BENCH_PROFILE_OUT"])
    return rate


def bench_scenario(scale: float) -> float:
    scenario = scaled(load_scenario("happy_path"), scale)
    start_cpu = time.process_time()
    result = run_scenario(scenario)
    cpu_s = time.process_time() - start_cpu
    rate = result.payments / result.wall_s
    print(
        f"scenario: happy_path x{scale:g}: {result.payments:,} payments, virtual "
        f"{result.virtual_s:,.0f} s in {result.wall_s:.1f} s wall = {rate:,.0f} payments/s; "
        f"{cpu_s:.1f} s CPU = {result.payments / cpu_s:,.0f} payments/CPU s "
        f"({'ok' if result.ok else result.violation})"
    )
    return rate


#: Cyclic-GC thresholds for the bench process. trio's tasks, cancel scopes and exceptions make
#: many short-lived cycles; with the defaults (700, 10, 10) the collector took ~20% of the
#: engine run (2.7-3.2 s of 13-14 s for 2,000 payments), with these ~0.5 s. A process setting,
#: not an engine change: a server process can use the same.
GC_THRESHOLDS = (100_000, 50, 100)


def main() -> None:
    gc.set_threshold(*GC_THRESHOLDS)
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=500)
    parser.add_argument("--orders-max", type=int, default=3)
    parser.add_argument("--scenario-scale", type=float, default=1.0)
    parser.add_argument("--only", choices=["engine", "scenario"])
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--counts", action="store_true", help="also count trio task steps")
    args = parser.parse_args()
    if args.only in (None, "engine"):
        bench_engine(args.payments, args.concurrency, args.orders_max, args.profile, args.counts)
    if args.only in (None, "scenario"):
        bench_scenario(args.scenario_scale)


if __name__ == "__main__":
    main()
