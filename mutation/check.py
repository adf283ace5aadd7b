"""The kill check: the simulator alone, run against whatever tree it is imported from.

cosmic-ray runs `python -m mutation.check` once per mutant, in a copy of the tree where one
change is planted. The check runs `SCENARIOS` (shipped scenarios, each scaled down by `SCALE`)
for `SEEDS` and stops at the first oracle violation or the first run that raises. It prints one
verdict line that the report reads back (`VERDICT_PREFIX`), and exits non-zero when the mutant
is killed, so the tool counts it:

- `held` (exit 0): every run held every invariant; the mutant survives.
- `invariant` (exit 1): the oracle reported a violation: the mutant is killed by an invariant.
- `crash` (exit 3): a run raised (the engine could not run at all, or an actor's crash escaped):
  killed, but only by a crash, which the lead wants counted apart.

A mutant that loops forever is killed by cosmic-ray's per-mutant timeout (`timeout`). Names in
`SCENARIOS` that do not load (scenarios not shipped yet) are skipped with a printed note, so
the list can name scenarios before they exist.
"""

from __future__ import annotations

import enum
import sys
import traceback
from collections.abc import Callable, Sequence

import attrs

#: The kill check's scenarios, most discriminating first (a killed mutant stops early). The
#: one place to add a scenario (`crash_sweep`, `psp_outage` are the lead's, not shipped yet).
SCENARIOS: tuple[str, ...] = (
    "everything",
    "psp_timeouts",
    "duplicate_webhooks",
    "lost_webhooks",
    "crash_restart",
    "crash_sweep",
    "psp_outage",
    "refund_storm",
    "risk_review",
    "hot_seller",
    "swarm",
)
#: Seeds per scenario (swarm draws its own fault plan per seed). happy_path is left out: every
#: scenario above runs its traffic, with faults on top.
SEEDS: tuple[int, ...] = (1, 2)
#: The traffic time of every scenario times this: about 100 payments a run, under a second.
SCALE = 0.1
#: The first word of the line the report reads back from the check's output.
VERDICT_PREFIX = "mutation-check:"
#: How the verdict line reports the actor restarts of the runs.
RESTARTS_LABEL = "actor_restarts="

EXIT_HELD = 0
EXIT_INVARIANT = 1
EXIT_USAGE = 2
EXIT_CRASH = 3


class Verdict(enum.StrEnum):
    HELD = "held"
    INVARIANT = "invariant"
    CRASH = "crash"


@attrs.frozen
class CheckResult:
    verdict: Verdict
    runs: int
    #: The scenario and seed of the run that killed the mutant (None when every run held).
    scenario: str | None = None
    seed: int | None = None
    #: The violated invariant, or the exception's last line.
    detail: str = ""
    skipped: tuple[str, ...] = ()
    #: Actor crashes the supervisor absorbed (restarts) over the runs. Not a kill: no invariant
    #: says an actor must not crash. Reported so the lead sees which survivors such an
    #: invariant would kill (the unmutated runs restart none).
    actor_restarts: int = 0

    def line(self) -> str:
        """The verdict line the report parses: `mutation-check: <verdict> <where>: <detail>`."""
        where = "" if self.scenario is None else f" {self.scenario} --seed {self.seed}"
        detail = f": {self.detail}" if self.detail else f": {self.runs} runs"
        return (
            f"{VERDICT_PREFIX} {self.verdict.value}{where}{detail}"
            f" {RESTARTS_LABEL}{self.actor_restarts}"
        )

    @property
    def exit_code(self) -> int:
        return {
            Verdict.HELD: EXIT_HELD,
            Verdict.INVARIANT: EXIT_INVARIANT,
            Verdict.CRASH: EXIT_CRASH,
        }[self.verdict]


class NoScenario(Exception):
    """Every scenario the check names failed to load: a check that runs nothing proves nothing."""


def _last_line(exc: BaseException) -> str:
    """The exception's last line; for a trio nursery's ExceptionGroup, its first leaf's."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return text.splitlines()[-1] if text else type(exc).__name__


def run_check(
    scenarios: Sequence[str] = SCENARIOS,
    seeds: Sequence[int] = SEEDS,
    *,
    scale: float = SCALE,
    seams: frozenset[str] = frozenset(),
    note: Callable[[str], None] = print,
) -> CheckResult:
    """Run each scenario for each seed; stop at the first violation or exception.

    `seams` are actors/context.py's test-only faults, so a test can plant a known bug.
    """
    # Imported here, not at the top: a mutant that breaks an import is a crash, not a traceback.
    try:
        from scenarios import ScenarioError, load_scenario
        from simulator.runner import run_scenario, scaled
    except Exception as exc:
        return CheckResult(Verdict.CRASH, 0, "import", 0, _last_line(exc))
    skipped: list[str] = []
    runs = restarts = 0
    loaded = 0
    for name in scenarios:
        try:
            scenario = scaled(load_scenario(name), scale)
        except ScenarioError as exc:
            note(f"mutation-check note: scenario {name} skipped ({exc})")
            skipped.append(name)
            continue
        loaded += 1
        for seed in seeds:
            runs += 1
            try:
                result = run_scenario(scenario, seed, seams=seams, trace_states=False)
            except Exception as exc:
                return CheckResult(Verdict.CRASH, runs, name, seed, _last_line(exc), tuple(skipped))
            restarts += int(result.stats.get("actor_restarts", 0))
            if result.violation is not None:
                return CheckResult(
                    Verdict.INVARIANT,
                    runs,
                    name,
                    seed,
                    str(result.violation),
                    tuple(skipped),
                    restarts,
                )
    if not loaded:
        raise NoScenario(f"none of {', '.join(scenarios)} loads")
    return CheckResult(Verdict.HELD, runs, skipped=tuple(skipped), actor_restarts=restarts)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args:
        print(
            f"usage: python -m mutation.check (no arguments; got {' '.join(args)})", file=sys.stderr
        )
        return EXIT_USAGE
    try:
        result = run_check()
    except NoScenario as exc:
        print(f"mutation-check: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(result.line(), flush=True)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
