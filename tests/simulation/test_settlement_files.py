"""The world's settlement files: one per virtual day plus the partial last one, whose clean
copies add up to what the PSP captured and the ledger booked, corrupted by the fault plan with
every firing counted, the same bytes for the same seed."""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from pathlib import Path

import attrs
import trio
from trio.testing import MockClock

from actors.clock import TrioClock
from engine.gateway import CaptureStatus
from engine.money import Money
from payengine.cli import main
from scenarios import Scenario, load_scenario, parse_scenario
from simulator.corruption import CorruptionPlan
from simulator.determinism import deterministic_scheduling
from simulator.fake_psp import Capture, FakePsp
from simulator.runner import resolve, run_scenario, scaled
from simulator.settlement import DAY_MS, MovementKind, SettlementFile, date_of_ms
from simulator.settlement_desk import SettlementDesk
from simulator.settlement_parse import parse_settlement
from simulator.world import EPOCH_MS, SimWorld

FIRST_DAY = dt.date(2026, 1, 1)
FILE_FAULTS = {
    "settlement_row_dropped_p": 0.03,
    "settlement_row_duplicated_p": 0.03,
    "settlement_amount_altered_p": 0.03,
    "settlement_currency_altered_p": 0.03,
    "settlement_unknown_row_p": 0.5,
    "settlement_garbage_p": 0.5,
}


def _run_world(scenario: Scenario, seed: int) -> SimWorld:
    world = SimWorld(resolve(scenario, seed), seed)
    with deterministic_scheduling(seed):
        trio.run(world.run, clock=MockClock(autojump_threshold=0))
    assert world.violation is None, world.violation
    return world


def _with_file_faults(scenario: Scenario) -> Scenario:
    return attrs.evolve(scenario, faults=attrs.evolve(scenario.faults, **FILE_FAULTS))


def _clean_captured(world: SimWorld) -> Counter[str]:
    totals: Counter[str] = Counter()
    for record in world.settlement.files:
        parsed = parse_settlement(record.clean)
        assert isinstance(parsed, SettlementFile), parsed
        assert parsed.settlement_date == record.settlement_date
        for row in parsed.rows:
            assert row.kind is MovementKind.CAPTURE
            totals[row.gross.currency] += row.gross.minor
    return totals


def test_a_run_over_midnight_gets_a_file_per_day_adding_up_to_the_ledger() -> None:
    scenario = parse_scenario(
        {
            "name": "over_midnight",
            "duration_s": 1.05 * 86_400,
            "traffic": {"rate_per_s": 0.0005},
            "faults": FILE_FAULTS,
        }
    )
    world = _run_world(scenario, 3)
    files = world.settlement.files
    last_day = date_of_ms(EPOCH_MS + int(world.virtual_s * 1000))
    assert (
        [f.settlement_date for f in files]
        == [FIRST_DAY, last_day]
        == [
            FIRST_DAY,
            FIRST_DAY + dt.timedelta(days=1),
        ]
    )
    assert [f.final for f in files] == [False, True]
    assert all(f.rows > 0 for f in files)
    captured = _clean_captured(world)
    assert captured == world.psp.captured_total()
    snap = world.store.snapshot()
    ledger = {c: total for (account, c), total in snap.trial.items() if account == "psp_clearing"}
    assert {c: v for c, v in captured.items() if v} == {c: v for c, v in ledger.items() if v}


def test_fired_corruptions_are_counted_and_reported() -> None:
    scenario = _with_file_faults(scaled(load_scenario("happy_path"), 0.05))
    result = run_scenario(scenario, 4)
    assert result.ok, result.violation
    report = result.stats["settlement"]
    assert report["files"] == 1 and report["rows"] > 0
    counted = {
        k.removeprefix("settlement_"): v
        for k, v in result.faults.items()
        if k.startswith("settlement_")
    }
    assert counted == report["corruptions"] and counted, result.faults


def test_the_same_seed_delivers_the_same_bytes_and_another_seed_other_bytes() -> None:
    scenario = _with_file_faults(scaled(load_scenario("happy_path"), 0.05))
    first, again, other = (_run_world(scenario, s).settlement.files for s in (5, 5, 6))
    assert first == again
    assert [f.delivered for f in first] != [f.delivered for f in other]
    for record in first:
        assert (record.delivered != record.clean) == bool(record.corruptions)
        assert _ledger_free_parse_ok(record.clean)


def _ledger_free_parse_ok(data: bytes) -> bool:
    return isinstance(parse_settlement(data), SettlementFile)


def test_file_faults_leave_the_engines_run_unchanged() -> None:
    """The files draw from their own rng stream: the engine's run, seen through the PSP's
    books and the report's other faults, is the same with or without file corruption."""
    base = scaled(load_scenario("psp_timeouts"), 0.05)
    plain, corrupted = run_scenario(base, 2), run_scenario(_with_file_faults(base), 2)
    others = {k: v for k, v in corrupted.faults.items() if not k.startswith("settlement_")}
    assert others == plain.faults
    assert corrupted.summary == plain.summary


async def test_the_desk_settles_each_day_at_midnight(autojump_clock: MockClock) -> None:
    clock = TrioClock(EPOCH_MS)
    psp = FakePsp(clock)
    fired: list[tuple[object, ...]] = []
    desk = SettlementDesk(
        psp,
        random.Random(1),
        CorruptionPlan(row_dropped_p=0.5),
        start_ms=clock.now_ms(),
        on_fault=lambda *fields: fired.append(fields),
    )
    for day in range(3):
        for i in range(4):
            key = f"ord_{day}_{i}"
            psp.captures[key] = Capture(
                f"cap_{day}_{i}",
                key,
                "cs_1",
                Money(1000 + i, "EUR"),
                CaptureStatus.CAPTURED,
                clock.now_ms(),
            )
            await trio.sleep(3600.0)
        await trio.sleep(DAY_MS / 1000 - 4 * 3600.0)
        desk.settle_through(clock.now_ms())
        assert len(desk.files) == day + 1
    await trio.sleep(60.0)
    desk.settle_final(clock.now_ms())
    assert [f.settlement_date.day for f in desk.files] == [1, 2, 3, 4]
    assert [f.rows for f in desk.files] == [4, 4, 4, 0]
    assert len(fired) == sum(len(f.corruptions) for f in desk.files) > 0
    assert all(name == "settlement_row_dropped" for name, *_ in fired)


def test_the_cli_writes_the_delivered_and_clean_files(tmp_path: Path) -> None:
    out = tmp_path / "files"
    code = main(["scenario", "run", "everything", "--scale", "0.02", "--settlement-dir", str(out)])
    assert code == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "fakepsp-settlement-20260101.clean.csv",
        "fakepsp-settlement-20260101.csv",
    ]
    clean = parse_settlement((out / names[0]).read_bytes())
    assert isinstance(clean, SettlementFile) and clean.rows


def test_an_unusable_settlement_dir_is_exit_two(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["scenario", "run", "happy_path", "--settlement-dir", str(blocker / "x")]) == 2
