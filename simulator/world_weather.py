"""The world's weather: correlated outages (the PSP's, the database's) and the PSP's per-call
fault choices and latency, drawn from the world's seeded streams.

Functions of the `SimWorld` whose state they change (`outage_until`, `outage_over`,
`webhooks_stalled`, `db_down`), kept apart from simulator/world.py, the world's spine. The PSP
calls `choose` and `latency` (`FakePsp.chooser`, `FakePsp.latency`) before each operation.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import trio

from simulator.determinism import stream
from simulator.fake_psp import Action

if TYPE_CHECKING:
    from simulator.world import SimWorld


# --- correlated faults: PSP outages ----------------------------------------------------------
async def psp_outages(world: SimWorld) -> None:
    """Outages come as a Poisson process while the faults are on; each lasts a while."""
    f = world.plan
    rng = world.rng_outage
    while True:
        await trio.sleep(rng.expovariate(1.0 / f.psp_outage_interval_s))
        if not world.faults_on:
            return
        duration_s = rng.uniform(f.psp_outage_s_min, f.psp_outage_s_max)
        world.outage_until = trio.current_time() + duration_s
        world.outage_over = trio.Event()
        world.webhooks_stalled = rng.random() < f.psp_outage_webhooks_stall_p
        kind = "psp_outage" if world.webhooks_stalled else "psp_api_outage"
        world.fault(kind, round(duration_s, 3))
        await trio.sleep(duration_s)
        end_psp_outage(world)


async def db_outages(world: SimWorld) -> None:
    """Database outages, as PSP outages: a Poisson process while the faults are on."""
    f = world.plan
    rng = stream(world.seed, "db_outage")
    while True:
        await trio.sleep(rng.expovariate(1.0 / f.db_outage_interval_s))
        if not world.faults_on:
            return
        duration_s = rng.uniform(f.db_outage_s_min, f.db_outage_s_max)
        world.db_down = True
        world.fault("db_outage", round(duration_s, 3))
        await trio.sleep(duration_s)
        end_db_outage(world)


def end_db_outage(world: SimWorld) -> None:
    if world.db_down:
        world.db_down = False
        world.note("db_outage_over")


def end_psp_outage(world: SimWorld) -> None:
    if world.outage_until is not None:
        world.outage_until = None
        world.webhooks_stalled = False
        world.outage_over.set()
        world.note("psp_outage_over")


# --- the PSP's faults ------------------------------------------------------------------------
def choose(world: SimWorld, operation: str) -> Action:
    action = Action.OK
    if world.outage_until is not None:
        # Down: connections time out or are refused, nothing is acted on.
        action = Action.HANG if world.rng_outage.random() < 0.5 else Action.UNAVAILABLE
        world.fault(f"psp_outage_{action.value}", operation)
        return action
    if world.faults_on:
        f = world.plan
        r = world.rng_psp.random()
        table: list[tuple[float, Action]] = [
            (f.psp_unavailable_p, Action.UNAVAILABLE),
            (f.psp_hang_p, Action.HANG),
            (f.psp_timeout_after_p, Action.TIMEOUT_AFTER),
        ]
        if operation == "capture":
            table += [
                (f.psp_decline_p, Action.DECLINE),
                (f.psp_failed_attempt_p, Action.FAILED_ATTEMPT),
            ]
        elif operation == "refund":
            table += [
                (f.psp_decline_p, Action.DECLINE),
                (f.psp_refund_pending_p, Action.PENDING),
            ]
        for p, candidate in table:
            if r < p:
                action = candidate
                break
            r -= p
    if action is not Action.OK:
        world.fault(f"psp_{action.value}", operation)
    else:
        world.note("psp", operation)
    return action


def latency(world: SimWorld, operation: str) -> float:
    f = world.plan
    if f.psp_latency_ms_median <= 0:
        return 0.0
    # Log-normal around the median with a long tail, capped: PSP latency's usual shape.
    ms = f.psp_latency_ms_median * math.exp(world.rng_psp.gauss(0.0, 0.8))
    return min(ms, f.psp_latency_ms_max) / 1000.0
