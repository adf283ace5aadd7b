"""The mutation kill check kills what the oracle sees and lets an unmutated tree through.

`make mutation` trusts `mutation.check` to tell a mutant from the real engine: if it failed on
the unmutated tree every mutant would look killed, and if it missed a planted bug the score
would be a lie. The planted bug is one of actors/context.py's test-only seams, passed to the
simulator the way tests/simulation/test_planted_bugs.py does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import simulator.runner
from mutation import check
from mutation.check import CheckResult, NoScenario, Verdict, run_check
from mutation.report import Mutant, Outcome, outcome_of
from mutation.targets import TARGETS, Target, index, skip_reason

ROOT = Path(__file__).resolve().parents[2]


def test_the_check_holds_on_the_unmutated_tree() -> None:
    # Every scenario of the check, one seed (the session runs the full check before any mutant).
    notes: list[str] = []
    result = run_check(seeds=check.SEEDS[:1], note=notes.append)
    assert result.verdict is Verdict.HELD, result
    assert result.exit_code == check.EXIT_HELD
    loaded = len(check.SCENARIOS) - len(result.skipped)
    assert loaded >= 1 and result.runs == loaded
    assert result.actor_restarts == 0  # the report's "survivors that crashed an actor" rely on it
    assert len(notes) == len(result.skipped)


def test_a_planted_bug_is_killed_by_an_invariant() -> None:
    result = run_check(seams=frozenset({"timeout_as_failure"}), note=lambda _: None)
    assert result.verdict is Verdict.INVARIANT, result
    assert result.exit_code == check.EXIT_INVARIANT
    assert result.detail.split(":")[0] in {
        "captured_orders_match_psp",
        "psp_captured_equals_ledger",
    }
    assert result.line().startswith(f"mutation-check: invariant {result.scenario} --seed ")


def test_a_run_that_raises_is_killed_by_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> object:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(simulator.runner, "run_scenario", broken)
    result = run_check(scenarios=("happy_path",), note=lambda _: None)
    assert result == CheckResult(
        Verdict.CRASH, 1, "happy_path", check.SEEDS[0], "ZeroDivisionError: division by zero"
    )
    assert result.line() == (
        "mutation-check: crash happy_path --seed 1: ZeroDivisionError: division by zero"
        " actor_restarts=0"
    )
    assert result.exit_code == check.EXIT_CRASH


def test_a_crash_names_the_exception_inside_a_nursery_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: object, **kwargs: object) -> object:
        raise ExceptionGroup("Exceptions from Trio nursery", [KeyError("order_1")])

    monkeypatch.setattr(simulator.runner, "run_scenario", broken)
    result = run_check(scenarios=("happy_path",), note=lambda _: None)
    assert result.verdict is Verdict.CRASH
    assert result.detail == "KeyError: 'order_1'"


def test_a_scenario_not_shipped_is_skipped_with_a_note() -> None:
    notes: list[str] = []
    result = run_check(scenarios=("no_such_scenario", "happy_path"), seeds=(1,), note=notes.append)
    assert result.verdict is Verdict.HELD
    assert result.skipped == ("no_such_scenario",)
    assert result.runs == 1
    assert len(notes) == 1 and "no_such_scenario skipped" in notes[0]


def test_a_check_that_loads_no_scenario_refuses_to_pass() -> None:
    with pytest.raises(NoScenario):
        run_check(scenarios=("no_such_scenario",), note=lambda _: None)


def test_the_check_takes_no_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert check.main(["--fast"]) == check.EXIT_USAGE
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("worker", "test", "output", "expected"),
    [
        ("normal", "survived", "mutation-check: held: 18 runs\n", Outcome.SURVIVED),
        ("normal", "killed", "mutation-check: invariant everything --seed 1: x", Outcome.INVARIANT),
        ("normal", "killed", "mutation-check: crash everything --seed 1: KeyError", Outcome.CRASH),
        ("normal", "killed", "Traceback (most recent call last):\n", Outcome.CRASH),
        ("normal", "killed", "timeout", Outcome.TIMEOUT),
        ("exception", "incompetent", "Traceback", Outcome.INCOMPETENT),
        ("skipped", None, "annotation", None),
        ("no-test", None, "", None),
    ],
)
def test_each_mutant_is_counted_by_how_it_ended(
    worker: str, test: str | None, output: str, expected: Outcome | None
) -> None:
    assert outcome_of(worker, test, output) == expected


def test_every_target_names_definitions_that_exist() -> None:
    for target in TARGETS:
        index(ROOT, target)  # asserts every name in `only` is a top-level definition


def test_noise_and_untargeted_code_are_skipped(tmp_path: Path) -> None:
    source = (
        "import logging\n"
        "log = logging.getLogger(__name__)\n"
        "def kept(a: int | None) -> int:\n"
        "    log.info('x %s', a + 1)\n"
        "    assert a, f'{a - 1}'\n"
        "    return a * 2\n"
        "def other(a):\n"
        "    return a - 1\n"
        "def seamed(self, a, *, b):\n"
        '    if "bug" in self.faults and a > 0:\n'
        "        return 7\n"
        "    return a\n"
    )
    (tmp_path / "m.py").write_text(source)
    target = Target("m.py", only=("kept", "seamed"))

    def reason(operator: str, start: tuple[int, int], end: tuple[int, int]) -> str | None:
        return skip_reason(tmp_path, target, f"core/{operator}", start, end)

    assert reason("ReplaceBinaryOperator_BitOr_Add", (3, 16), (3, 17)) == "annotation"
    assert reason("ReplaceBinaryOperator_Add_Sub", (4, 23), (4, 24)) == "logging call"
    assert reason("ReplaceBinaryOperator_Sub_Add", (5, 19), (5, 20)) == "assert message"
    assert reason("ReplaceBinaryOperator_Mul_Add", (6, 13), (6, 14)) is None
    assert reason("NumberReplacer", (6, 15), (6, 16)) is None
    assert reason("ReplaceBinaryOperator_Sub_Add", (8, 13), (8, 14)) == (
        "outside the targeted definitions"
    )
    assert reason("ReplaceBinaryOperator_Mul_Add", (9, 20), (9, 21)) == "not an operator"
    assert reason("AddNot", (10, 7), (10, 27)) is None  # flipping the seam plants its bug
    assert reason("ReplaceComparisonOperator_Gt_Lt", (10, 32), (10, 37)) == "test-only seam"
    assert reason("NumberReplacer", (11, 15), (11, 16)) == "test-only seam"


def test_a_survivor_reports_the_actor_crashes_its_runs_absorbed() -> None:
    def mutant(verdict: str) -> Mutant:
        return Mutant("actors/order.py", 1, "core/AddNot", 0, Outcome.SURVIVED, "a", "b", verdict)

    assert mutant("mutation-check: held: 18 runs actor_restarts=7").actor_restarts == 7
    assert mutant("mutation-check: held: 18 runs actor_restarts=0").actor_restarts == 0
    assert mutant("").actor_restarts == 0
