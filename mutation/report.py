"""The score of a finished cosmic-ray session, read back from its database.

Each mutant that ran is sorted by how it ended: killed by an invariant (the check's verdict
line says `invariant`), killed by a crash (a run raised, or the process died before printing a
verdict), killed by the timeout, or survived. Mutants skipped as noise or left out of a sample
are not counted. The tool's own failures (`incompetent`: it could not apply or run a mutant)
are counted apart, never as kills.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import attrs

from mutation.check import RESTARTS_LABEL, VERDICT_PREFIX, Verdict


class Outcome(enum.StrEnum):
    INVARIANT = "killed by invariant"
    CRASH = "killed by crash"
    TIMEOUT = "killed by timeout"
    SURVIVED = "survived"
    INCOMPETENT = "incompetent"


@attrs.frozen
class Mutant:
    path: str
    line: int
    operator: str
    occurrence: int
    outcome: Outcome
    #: The changed source line, before and after.
    before: str
    after: str
    #: The check's verdict line (which scenario and seed killed it, and why).
    verdict: str

    @property
    def actor_restarts(self) -> int:
        """The actor crashes the check's runs absorbed (0 when not reported)."""
        _, found, rest = self.verdict.partition(RESTARTS_LABEL)
        return int(rest.split()[0]) if found and rest else 0

    def describe(self) -> str:
        op = self.operator.removeprefix("core/")
        return f"{self.path}:{self.line} {op}: `{self.before}` -> `{self.after}`"


def _verdict_line(output: str) -> str:
    for line in output.splitlines():
        if line.startswith(VERDICT_PREFIX):
            return line
    return ""


def outcome_of(worker_outcome: str, test_outcome: str | None, output: str) -> Outcome | None:
    """How a mutant ended; None when it did not run (skipped, or no mutation possible)."""
    if worker_outcome in {"skipped", "no-test"}:
        return None
    if worker_outcome != "normal" or test_outcome == "incompetent":
        return Outcome.INCOMPETENT
    if test_outcome == "survived":
        return Outcome.SURVIVED
    if output.strip() == "timeout":
        return Outcome.TIMEOUT
    verdict = _verdict_line(output)
    if verdict.startswith(f"{VERDICT_PREFIX} {Verdict.INVARIANT.value}"):
        return Outcome.INVARIANT
    return Outcome.CRASH


def _changed_lines(diff: str) -> tuple[str, str]:
    before = [ln[1:].strip() for ln in diff.splitlines() if ln.startswith("-") and ln[1:2] != "-"]
    after = [ln[1:].strip() for ln in diff.splitlines() if ln.startswith("+") and ln[1:2] != "+"]
    return " / ".join(before), " / ".join(after)


def read_session(db_path: Path) -> list[Mutant]:
    from cosmic_ray.work_db import WorkDB, use_db

    mutants: list[Mutant] = []
    with use_db(str(db_path), mode=WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            outcome = outcome_of(
                result.worker_outcome.value,
                None if result.test_outcome is None else result.test_outcome.value,
                result.output or "",
            )
            if outcome is None:
                continue
            (spec,) = item.mutations
            before, after = _changed_lines(result.diff or "")
            mutants.append(
                Mutant(
                    path=str(spec.module_path),
                    line=spec.start_pos[0],
                    operator=spec.operator_name,
                    occurrence=spec.occurrence,
                    outcome=outcome,
                    before=before,
                    after=after,
                    verdict=_verdict_line(result.output or ""),
                )
            )
    mutants.sort(key=lambda m: (m.path, m.line, m.operator, m.occurrence))
    return mutants


def render(mutants: Iterable[Mutant]) -> str:
    mutants = list(mutants)
    counts = Counter(m.outcome for m in mutants)
    judged = len(mutants) - counts[Outcome.INCOMPETENT]
    killed = judged - counts[Outcome.SURVIVED]
    lines = [
        f"mutants run: {len(mutants)}",
        *(f"  {outcome.value}: {counts[outcome]}" for outcome in Outcome),
        f"score: {killed}/{judged} killed"
        + (f" ({100 * killed / judged:.1f}%)" if judged else "")
        + f"; by the oracle's invariants alone: {counts[Outcome.INVARIANT]}/{judged}"
        + (f" ({100 * counts[Outcome.INVARIANT] / judged:.1f}%)" if judged else ""),
    ]
    by_file = Counter(m.path for m in mutants)
    survived_by_file = Counter(m.path for m in mutants if m.outcome is Outcome.SURVIVED)
    lines.append("per file (survived/run):")
    lines += [f"  {path}: {survived_by_file[path]}/{n}" for path, n in sorted(by_file.items())]
    survivors = [m for m in mutants if m.outcome is Outcome.SURVIVED]
    lines.append(f"survivors ({len(survivors)}):")
    lines += [f"  {m.describe()}" for m in survivors]
    crashed_actors = [m for m in survivors if m.actor_restarts]
    if crashed_actors:
        lines.append(
            f"survivors that crashed an actor ({len(crashed_actors)}; the supervisor restarted "
            "it and no invariant noticed):"
        )
        lines += [f"  {m.describe()}  [{m.actor_restarts} restarts]" for m in crashed_actors]
    crashes = [m for m in mutants if m.outcome is Outcome.CRASH]
    if crashes:
        lines.append(f"killed only by a crash ({len(crashes)}):")
        lines += [f"  {m.describe()}  [{m.verdict or 'no verdict line'}]" for m in crashes]
    incompetent = [m for m in mutants if m.outcome is Outcome.INCOMPETENT]
    if incompetent:
        lines.append(f"incompetent ({len(incompetent)}), the tool could not run them:")
        lines += [f"  {m.describe()}" for m in incompetent]
    return "\n".join(lines)
