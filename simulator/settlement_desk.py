"""The fake PSP's settlement desk: one settlement file per simulated day, corrupted by the plan.

Why a module of its own: the world (simulator/world.py) only calls `settle_through` on its
minute ticker and `settle_final` when the run ends; everything else is here. At each virtual
day boundary (UTC midnight of the virtual wall clock) the desk builds the day's file from the
fake PSP's books, keeps that clean copy (the truth, for reconciliation tests), applies the
corruption faults with its own seeded rng stream (so the file faults never shift the traffic,
PSP or webhook streams), counts every fault that fired through `on_fault`, and keeps both
copies as a `SettlementRecord`. When the run ends, the partial last day gets its file too.

Corruption applies whether or not the world's faults are still on: damaged files do not stop
the engine from becoming quiet, and most runs are shorter than a day, so their only file is
the final one.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs

from engine.money import Money
from scenarios import Faults
from simulator.corruption import (
    Applied,
    CorruptionPlan,
    altered_minor,
    corrupt_bytes,
    corrupt_rows,
)
from simulator.fake_psp import FakePsp
from simulator.settlement import (
    DAY_MS,
    FeeSchedule,
    SettlementFile,
    SettlementRow,
    build_settlement,
    date_of_ms,
    day_start_ms,
    movements_of_psp,
    render_settlement,
)

#: Currencies an altered-currency fault relabels a row with.
ALTERED_CURRENCIES = ("USD", "EUR", "GBP", "JPY", "BHD", "CHF")


@attrs.frozen
class SettlementRecord:
    """One day's file as the PSP meant it (`clean`) and as it arrived (`delivered`)."""

    settlement_date: dt.date
    file_id: str
    clean: bytes
    delivered: bytes
    rows: int
    corruptions: tuple[Applied, ...]
    #: The partial last day, produced when the run ended rather than at a day boundary.
    final: bool


def _alter_amount(row: SettlementRow, rng: random.Random) -> SettlementRow:
    gross = Money(altered_minor(row.gross.minor, rng), row.gross.currency)
    return attrs.evolve(row, gross=gross)


def _alter_currency(row: SettlementRow, rng: random.Random) -> SettlementRow:
    other = rng.choice([c for c in ALTERED_CURRENCIES if c != row.gross.currency])
    return attrs.evolve(row, gross=Money(row.gross.minor, other), fee=Money(row.fee.minor, other))


def corrupt_settlement(
    file: SettlementFile, rng: random.Random, plan: CorruptionPlan
) -> tuple[bytes, list[Applied]]:
    """The bytes the PSP delivers for `file` under `plan`, and the corruptions that fired."""
    rows, applied = corrupt_rows(
        file.rows,
        rng,
        plan,
        describe=lambda row: row.psp_reference,
        alter_amount=_alter_amount,
        alter_currency=_alter_currency,
    )
    booked = attrs.evolve(file, rows=tuple(rows))
    unknown = f"ADJUSTMENT,{file.file_id}-adj,reserve_release".encode("ascii")
    data, transport = corrupt_bytes(
        render_settlement(booked),
        rng,
        plan,
        trailer_prefix=b"TRAILER,",
        unknown_line=unknown,
    )
    return data, applied + transport


class SettlementDesk:
    def __init__(
        self,
        psp: FakePsp,
        rng: random.Random,
        plan: CorruptionPlan,
        *,
        start_ms: int,
        on_fault: Callable[..., None],
        fees: FeeSchedule | None = None,
    ) -> None:
        self.psp = psp
        self.rng = rng
        self.plan = plan
        self.fees = fees or FeeSchedule()
        self.on_fault = on_fault
        self.files: list[SettlementRecord] = []
        self._next_date = date_of_ms(start_ms)

    @classmethod
    def of_world(
        cls, psp: FakePsp, seed: int, faults: Faults, on_fault: Callable[..., None]
    ) -> SettlementDesk:
        """The desk of a simulated world: its own rng stream `"<seed>:settlement"`."""
        rng = random.Random(f"{seed}:settlement")
        plan = CorruptionPlan.settlement(faults)
        return cls(psp, rng, plan, start_ms=psp.clock.now_ms(), on_fault=on_fault)

    def settle_through(self, now_ms: int) -> None:
        """Produce the file of every day that ended at or before `now_ms` (wall ms)."""
        while day_start_ms(self._next_date) + DAY_MS <= now_ms:
            self._produce(final=False)

    def settle_final(self, now_ms: int) -> None:
        """The run ends: the remaining full days, then the partial day `now_ms` falls in."""
        self.settle_through(now_ms)
        self._produce(final=True)

    def _produce(self, *, final: bool) -> None:
        date = self._next_date
        file = build_settlement(movements_of_psp(self.psp), date, self.fees)
        clean = render_settlement(file)
        delivered, applied = corrupt_settlement(file, self.rng, self.plan)
        for corruption in applied:
            self.on_fault(
                f"settlement_{corruption.corruption.value}", file.file_id, corruption.detail
            )
        self.files.append(
            SettlementRecord(
                date, file.file_id, clean, delivered, len(file.rows), tuple(applied), final
            )
        )
        self._next_date = date + dt.timedelta(days=1)

    def report(self) -> dict[str, Any]:
        fired = Counter(a.corruption.value for f in self.files for a in f.corruptions)
        return {
            "files": len(self.files),
            "rows": sum(f.rows for f in self.files),
            "corrupted_files": sum(1 for f in self.files if f.corruptions),
            "corruptions": dict(sorted(fired.items())),
        }


def swarm_settlement_faults(faults: Faults, seed: int) -> Faults:
    """`faults` with swarm testing's draw of the settlement faults, from a stream of its own
    (so these keys did not change the plan any earlier seed drew for the other faults)."""
    rng = random.Random(f"{seed}:swarm_settlement")

    def maybe(high: float) -> float:
        return round(rng.uniform(0.0, high), 4) if rng.random() < 0.5 else 0.0

    return attrs.evolve(
        faults,
        settlement_row_dropped_p=maybe(0.02),
        settlement_row_duplicated_p=maybe(0.02),
        settlement_amount_altered_p=maybe(0.02),
        settlement_currency_altered_p=maybe(0.02),
        settlement_unknown_row_p=maybe(0.5),
        settlement_trailer_missing_p=maybe(0.3),
        settlement_truncated_p=maybe(0.3),
        settlement_garbage_p=maybe(0.3),
    )


def write_settlement_files(files: Iterable[SettlementRecord], directory: Path) -> list[Path]:
    """Each file as delivered (`<file id>.csv`) and its clean copy (`<file id>.clean.csv`)."""
    written: list[Path] = []
    for record in files:
        for suffix, data in ((".csv", record.delivered), (".clean.csv", record.clean)):
            path = directory / f"{record.file_id}{suffix}"
            path.write_bytes(data)
            written.append(path)
    return written
