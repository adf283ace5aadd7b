"""Run a scenario with a seed, judge it with the oracle, fuzz many seeds, shrink a failure.

`run_scenario` is the one entry point: it builds a `SimWorld`, runs it under `trio.run` on a
MockClock with autojump (virtual time: a simulated day takes seconds) inside
`deterministic_scheduling(seed)`, then applies every final invariant. A `RunResult` carries the
report: counts, money per currency, faults fired, each invariant's verdict, virtual and wall
time, the trace hash and the replay command.

`fuzz` is swarm testing: each seed draws its own fault plan (`swarm_faults`), so runs explore
different mixes instead of one average; at the first violation `shrink` reruns the same seed
with less traffic and fewer faults while the same invariant still breaks, and returns the
smallest scenario that does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import trio

from scenarios import Faults, Scenario, Traffic
from simulator.determinism import deterministic_scheduling, stream
from simulator.oracle import INVARIANTS, Violation, check_final, summarize
from simulator.oracle_recon import INVARIANTS as RECON_INVARIANTS
from simulator.oracle_recon import check_recon
from simulator.recon_faults import swarm_settlement_faults
from simulator.virtual_clock import virtual_clock
from simulator.world import SimWorld
from simulator.world_payouts import judge_payouts, swarm_payout_faults, swarm_payout_traffic

#: The most reruns one shrink may spend, and the shortest traffic phase it tries (virtual s).
SHRINK_RUNS_MAX = 24
SHRINK_DURATION_S_MIN = 30.0


@attrs.frozen
class RunResult:
    scenario: Scenario
    seed: int
    violation: Violation | None
    invariants: dict[str, str]
    summary: dict[str, Any]
    faults: dict[str, int]
    stats: dict[str, Any]
    virtual_s: float
    wall_s: float
    trace_hash: str
    trace_events: int
    trace_recent: tuple[str, ...]
    replay: str
    #: The settlement files of the run (SettlementRecord), for `--settlement-dir`.
    settlement_files: tuple[Any, ...] = attrs.field(default=(), eq=False, repr=False)
    #: How the run was made when not deterministic (the postgres tier): store, database, time
    #: scale, what was scaled or disabled. Empty for the memory store.
    tier: dict[str, Any] = attrs.field(factory=dict)

    @property
    def ok(self) -> bool:
        return self.violation is None

    @property
    def payments(self) -> int:
        return int(sum(self.summary.get("payments", {}).values()))

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.name,
            "seed": self.seed,
            "ok": self.ok,
            "violation": None if self.violation is None else attrs.asdict(self.violation),
            "invariants": self.invariants,
            "summary": self.summary,
            "faults": self.faults,
            "stats": self.stats,
            "virtual_s": round(self.virtual_s, 3),
            "wall_s": round(self.wall_s, 3),
            "payments_per_wall_s": round(self.payments / self.wall_s, 1) if self.wall_s else None,
            "trace_hash": self.trace_hash,
            "trace_events": self.trace_events,
            "replay": self.replay,
            **({"tier": self.tier} if self.tier else {}),
        }


def replay_command(scenario: Scenario, seed: int) -> str:
    target = scenario.name if not scenario.source or _is_shipped(scenario) else scenario.source
    return f"payengine scenario run {target} --seed {seed}"


def _is_shipped(scenario: Scenario) -> bool:
    from scenarios import _shipped_dir

    return scenario.source.startswith(str(_shipped_dir()))


def scaled(scenario: Scenario, factor: float) -> Scenario:
    """The scenario with its traffic time (and burst window, expectations and settlement
    interval) times `factor`.

    Tests run the shipped scenarios scaled down; the shapes (rates, fault plans) stay the same.
    """
    assert factor > 0
    traffic = attrs.evolve(
        scenario.traffic,
        burst_start_s=scenario.traffic.burst_start_s * factor,
        burst_end_s=scenario.traffic.burst_end_s * factor,
    )
    expect = attrs.evolve(
        scenario.expect, completed_min=max(1, int(scenario.expect.completed_min * factor))
    )
    # The PSP's settlement batches scale alike, so a scaled run closes as many batches.
    interval_s = max(60.0, scenario.faults.settlement_interval_s * factor)
    faults = attrs.evolve(scenario.faults, settlement_interval_s=interval_s)
    return attrs.evolve(
        scenario,
        duration_s=scenario.duration_s * factor,
        traffic=traffic,
        expect=expect,
        faults=faults,
    )


def swarm_faults(seed: int) -> Faults:
    """A fault plan drawn from the seed: each fault on or off by a coin, then its strength."""
    rng = stream(seed, "swarm")

    def maybe(high: float) -> float:
        return round(rng.uniform(0.0, high), 4) if rng.random() < 0.5 else 0.0

    faults = Faults(
        psp_latency_ms_median=round(rng.uniform(20.0, 800.0), 1),
        psp_latency_ms_max=round(rng.uniform(800.0, 20_000.0), 1),
        psp_unavailable_p=maybe(0.15),
        psp_hang_p=maybe(0.1),
        psp_timeout_after_p=maybe(0.15),
        psp_decline_p=maybe(0.1),
        psp_failed_attempt_p=maybe(0.1),
        webhook_duplicate_p=maybe(0.4),
        webhook_duplicates_max=rng.randint(1, 4),
        webhook_delay_p=maybe(0.3),
        webhook_delay_s_max=round(rng.uniform(10.0, 7200.0), 1),
        webhook_reorder_p=maybe(0.4),
        webhook_loss_p=maybe(0.3),
        webhook_forged_p=maybe(0.1),
        crash_interval_s=round(rng.uniform(60.0, 900.0), 1) if rng.random() < 0.5 else 0.0,
        restart_delay_s_max=round(rng.uniform(0.0, 120.0), 1),
        crash_sweep_p=maybe(0.5),
        psp_outage_interval_s=round(rng.uniform(1800.0, 7200.0), 1) if rng.random() < 0.3 else 0.0,
        psp_outage_s_max=round(rng.uniform(120.0, 2400.0), 1),
        db_outage_interval_s=round(rng.uniform(600.0, 3600.0), 1) if rng.random() < 0.3 else 0.0,
        db_outage_s_max=round(rng.uniform(10.0, 300.0), 1),
    )
    # Pending PSP refunds, from a stream of their own (added with the refund traffic).
    refund_pending_p = round(stream(seed, "swarm_traffic_psp").uniform(0.0, 0.3), 4)
    psp = faults.psp_unavailable_p + faults.psp_hang_p + faults.psp_timeout_after_p
    if psp + faults.psp_decline_p + refund_pending_p <= 1:
        faults = attrs.evolve(faults, psp_refund_pending_p=refund_pending_p)
    # Disputes (chargebacks), from a stream of their own (added with the dispute flow).
    disputes = stream(seed, "swarm_disputes")
    if disputes.random() < 0.5:
        faults = attrs.evolve(
            faults,
            dispute_p=round(disputes.uniform(0.01, 0.3), 4),
            dispute_win_p=round(disputes.uniform(0.0, 1.0), 4),
            dispute_open_s_max=round(disputes.uniform(1.0, 1800.0), 1),
            dispute_close_s_max=round(disputes.uniform(1.0, 3600.0), 1),
        )
    return swarm_payout_faults(swarm_settlement_faults(faults, seed), seed)


def swarm_traffic(traffic: Traffic, seed: int) -> Traffic:
    """`traffic` with swarm testing's draw of the money-out traffic (refunds), from a stream of
    its own, so adding it changed no fault plan an earlier seed drew."""
    rng = stream(seed, "swarm_traffic")
    on = rng.random() < 0.5
    traffic = attrs.evolve(
        traffic,
        refund_p=round(rng.uniform(0.05, 0.5), 4) if on else 0.0,
        refund_partial_p=round(rng.uniform(0.0, 1.0), 4),
        refund_twice_p=round(rng.uniform(0.0, 0.5), 4),
        refund_delay_s_max=round(rng.uniform(1.0, 3600.0), 1),
        checkout_id_reuse_p=round(rng.uniform(0.0, 0.05), 4) if rng.random() < 0.3 else 0.0,
    )
    return swarm_payout_traffic(traffic, seed)


def resolve(scenario: Scenario, seed: int) -> Scenario:
    """The concrete scenario a seed runs: a swarm scenario gets the seed's own fault plan and
    money-out traffic."""
    if not scenario.swarm:
        return scenario
    traffic = swarm_traffic(scenario.traffic, seed)
    return attrs.evolve(scenario, faults=swarm_faults(seed), traffic=traffic)


@contextmanager
def _quiet_engine_logs(verbose: bool) -> Iterator[None]:
    """Faults make the engine log loudly on purpose (conflicts, dead letters); the report
    counts them instead."""
    logger = logging.getLogger("payengine")
    before = logger.level
    if not verbose:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(before)


def run_scenario(
    scenario: Scenario,
    seed: int | None = None,
    *,
    seams: frozenset[str] = frozenset(),
    progress: Callable[[SimWorld], None] | None = None,
    verbose: bool = False,
    trace_states: bool = True,
    replay_options: str = "",
) -> RunResult:
    """Run `scenario` with `seed` (default: the scenario's) in virtual time; judge it."""
    seed = scenario.seed if seed is None else seed
    concrete = resolve(scenario, seed)
    world = SimWorld(concrete, seed, seams=seams, trace_states=trace_states)
    world.progress = progress
    wall_start = time.perf_counter()
    with _quiet_engine_logs(verbose), deterministic_scheduling(seed):
        trio.run(world.run, clock=virtual_clock())
    wall_s = time.perf_counter() - wall_start
    return judge(world, wall_s, replay_command(scenario, seed) + replay_options)


def judge(world: SimWorld, wall_s: float, replay: str) -> RunResult:
    """The report of a finished world: the violation it stopped at, or the final checks.

    `world.store.snapshot()` is the committed state after the run (the postgres tier reads it
    through the Store port before its store closes, see simulator/pg_world.py).
    """
    concrete, seed = world.scenario, world.seed
    snap = world.store.snapshot()
    verdicts = {name: "held" for name in (*INVARIANTS, *RECON_INVARIANTS)}
    violation = world.violation
    if violation is None:
        found = check_final(
            snap,
            world.psp,
            idempotency_breaks=world.idempotency_breaks,
            forged_accepted=world.forged_accepted,
            notified=world.notified,
            register_attempts_max=world.config.register_attempts_max,
            commission_bps=world.config.commission_bps,
            paid_out=world.payouts.paid_out(),
        )
        found += check_recon(world.settlement, snap, world.psp.dispute_book.withdrawn_total())
        found += judge_payouts(world, snap)
        for v in found:
            verdicts[v.invariant] = f"violated: {v}"
        completed = snap_completed = sum(
            p.status.value == "COMPLETED" for p in snap.payments.values()
        )
        if not found and completed < concrete.expect.completed_min:
            found.append(
                Violation(
                    "expectations",
                    f"{snap_completed} payments completed; the scenario expects at least "
                    f"{concrete.expect.completed_min}",
                )
            )
            verdicts["expectations"] = f"violated: {found[-1]}"
        violation = found[0] if found else None
    else:
        verdicts[violation.invariant] = f"violated: {violation}"
        for name in (*INVARIANTS, *RECON_INVARIANTS):
            if name != violation.invariant:
                verdicts[name] = "not checked (run stopped)"
    stats = attrs.asdict(world.stats)
    stats["incarnations"] = world.stats.crashes + 1
    stats["settlement"] = world.settlement.report()
    if world.refunds.on:
        stats["refunds"] = world.refunds.report()
    if world.disputes.on:
        stats["disputes"] = world.disputes.report()
    if world.payouts.on:
        stats["payouts"] = world.payouts.report()
    if world.sweep is not None:
        stats["crash_sweep"] = world.sweep.report()
    return RunResult(
        scenario=concrete,
        seed=seed,
        violation=violation,
        invariants=verdicts,
        summary=summarize(snap, world.psp),
        faults=dict(sorted(world.faults.items())),
        stats={
            k: (dict(sorted(v.items())) if isinstance(v, dict) else v) for k, v in stats.items()
        },
        virtual_s=world.virtual_s,
        wall_s=wall_s,
        trace_hash=world.trace.hexdigest(),
        trace_events=world.trace.events,
        trace_recent=tuple(world.trace.recent),
        replay=replay,
        settlement_files=tuple(world.settlement.files),
    )


def shrink(
    scenario: Scenario,
    seed: int,
    invariant: str,
    *,
    seams: frozenset[str] = frozenset(),
    runs_max: int = SHRINK_RUNS_MAX,
    on_step: Callable[[str, bool], None] | None = None,
) -> Scenario:
    """The smallest variant of `scenario` (same seed) that still breaks `invariant`.

    Tries, greedily: half the traffic time, then each fault switched off, then half the rate.
    A change is kept when the rerun still violates the same invariant. Faults switched off stay
    off, so the result names the faults the failure needs.
    """
    best = attrs.evolve(resolve(scenario, seed), swarm=False)
    runs = 0

    def still_fails(candidate: Scenario, label: str) -> bool:
        nonlocal runs
        runs += 1
        result = run_scenario(candidate, seed, seams=seams)
        failed = result.violation is not None and result.violation.invariant == invariant
        if on_step is not None:
            on_step(label, failed)
        return failed

    while runs < runs_max and best.duration_s / 2 >= SHRINK_DURATION_S_MIN:
        candidate = attrs.evolve(best, duration_s=best.duration_s / 2)
        if not still_fails(candidate, f"duration_s={candidate.duration_s:g}"):
            break
        best = candidate
    for field in attrs.fields(Faults):
        if runs >= runs_max:
            break
        value = getattr(best.faults, field.name)
        if not field.name.endswith("_p") and field.name not in (
            "crash_interval_s",
            "psp_outage_interval_s",
            "db_outage_interval_s",
        ):
            continue
        if not value:
            continue
        off: dict[str, Any] = {field.name: 0.0}
        candidate = attrs.evolve(best, faults=attrs.evolve(best.faults, **off))
        if still_fails(candidate, f"faults.{field.name}=0"):
            best = candidate
    while runs < runs_max and best.traffic.rate_per_s > 0.01:
        traffic = attrs.evolve(best.traffic, rate_per_s=best.traffic.rate_per_s / 2)
        candidate = attrs.evolve(best, traffic=traffic)
        if not still_fails(candidate, f"traffic.rate_per_s={traffic.rate_per_s:g}"):
            break
        best = candidate
    return attrs.evolve(best, name=f"{scenario.name}_shrunk", source="")


@attrs.frozen
class FuzzResult:
    runs: int
    failure: RunResult | None
    shrunk: Scenario | None
    wall_s: float


def fuzz(
    base: Scenario,
    runs: int,
    seed_start: int,
    *,
    seams: frozenset[str] = frozenset(),
    on_run: Callable[[RunResult], None] | None = None,
    shrink_failure: bool = True,
) -> FuzzResult:
    """Run `runs` seeds from `seed_start`, each with its own fault plan; stop at a violation."""
    swarm = attrs.evolve(base, swarm=True)
    wall_start = time.perf_counter()
    for index in range(runs):
        result = run_scenario(swarm, seed_start + index, seams=seams)
        if on_run is not None:
            on_run(result)
        if result.violation is not None:
            assert result.violation is not None
            shrunk = (
                shrink(swarm, result.seed, result.violation.invariant, seams=seams)
                if shrink_failure
                else None
            )
            return FuzzResult(index + 1, result, shrunk, time.perf_counter() - wall_start)
    return FuzzResult(runs, None, None, time.perf_counter() - wall_start)
