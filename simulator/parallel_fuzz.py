"""`fuzz_parallel`: swarm fuzzing with seeds run in worker processes, same verdicts as `fuzz`.

Why processes: a run is CPU-bound Python on one trio thread, and trio's scheduler state (which
`deterministic_scheduling` seeds) is per process, so runs cannot share one. Each worker runs
`run_scenario(swarm, seed)` exactly as `fuzz` and `payengine scenario run swarm --seed N` do, in
a fresh `spawn`ed interpreter, so a seed's trace hash does not depend on which worker ran it.

Order and stopping: seeds are submitted in order, at most `jobs * IN_FLIGHT_PER_JOB` at a time.
At a violation no new seed is submitted; the seeds below it still running are awaited (one of
them may fail too), so the reported failure is the lowest failing seed, as with one process;
results of higher seeds are dropped. Shrinking then runs in this process, as `fuzz` does.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

import attrs

from scenarios import Scenario
from simulator.runner import FuzzResult, RunResult, fuzz, run_scenario, shrink

#: Seeds queued per worker beyond the one it runs, so no worker waits for the parent.
IN_FLIGHT_PER_JOB = 2


def default_jobs() -> int:
    """The CPUs this process may run on (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _run_seed(swarm: Scenario, seed: int, seams: frozenset[str]) -> RunResult:
    return run_scenario(swarm, seed, seams=seams)


def fuzz_parallel(
    base: Scenario,
    runs: int,
    seed_start: int,
    *,
    jobs: int,
    seams: frozenset[str] = frozenset(),
    on_run: Callable[[RunResult], None] | None = None,
    shrink_failure: bool = True,
) -> FuzzResult:
    """`fuzz` over `jobs` worker processes; `jobs=1` is `fuzz` itself, in this process."""
    assert jobs >= 1 and runs >= 1
    if jobs == 1:
        return fuzz(
            base, runs, seed_start, seams=seams, on_run=on_run, shrink_failure=shrink_failure
        )
    swarm = attrs.evolve(base, swarm=True)
    wall_start = time.perf_counter()
    seeds = iter(range(seed_start, seed_start + runs))
    running: dict[Future[RunResult], int] = {}
    failure: RunResult | None = None
    done_count = 0
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:

        def submit_more() -> None:
            while failure is None and len(running) < jobs * IN_FLIGHT_PER_JOB:
                seed = next(seeds, None)
                if seed is None:
                    return
                running[pool.submit(_run_seed, swarm, seed, seams)] = seed

        submit_more()
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in sorted(finished, key=running.__getitem__):
                seed = running.pop(future)
                if failure is not None and seed > failure.seed:
                    continue  # a higher seed than a known failure: not reported
                result = future.result()
                done_count += 1
                if on_run is not None:
                    on_run(result)
                if result.violation is not None:
                    failure = result
            if failure is not None:
                for future in [f for f, s in running.items() if s > failure.seed]:
                    if future.cancel():
                        running.pop(future)
            submit_more()
    wall_s = time.perf_counter() - wall_start
    if failure is None:
        return FuzzResult(done_count, None, None, wall_s)
    assert failure.violation is not None
    shrunk = (
        shrink(swarm, failure.seed, failure.violation.invariant, seams=seams)
        if shrink_failure
        else None
    )
    return FuzzResult(done_count, failure, shrunk, time.perf_counter() - wall_start)
