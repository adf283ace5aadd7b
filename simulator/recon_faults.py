"""The discrepancies the simulator injects into the fake PSP's nightly report, each recorded
with the item reconciliation must report for it (the oracle's ground truth).

Content faults, per line (at most one each): the PSP's books are wrong but the file is well
formed, so only matching against the ledger shows them:

| fault | what the PSP sends | the item reconciliation must report |
|---|---|---|
| row_dropped | the line is missing | investigate `missing_from_file` |
| row_duplicated | the line twice (the copy, a new PSP id) | investigate `duplicate_reference` |
| amount_altered | another gross (net follows) | manual_review `amount_differs` |
| currency_altered | the same minor units in another currency | manual_review `currency_differs` |
| fee_altered | another fee (net follows) | manual_review `fee_differs` |

Per file: a foreign line (a charge for an order that is not ours: investigate
`unknown_reference`), and damage (the bytes cannot be read: the file is refused whole, with a
located error, and the PSP sends it again undamaged).

Pure given the rng: the same rng state gives the same faults.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Sequence

import attrs

from engine.money import Money
from engine.reconciliation import Format, LineKind, SettlementLine
from engine.reconciliation.match import ItemClass, Reason
from scenarios import Faults

#: Currencies an altered-currency fault relabels a line with.
ALTERED_CURRENCIES = ("USD", "EUR", "GBP", "JPY", "BHD", "CHF")
#: Bytes that never occur in UTF-8: damage that no reader can take for text.
DAMAGE_BYTES = (b"\xff", b"\xfe", b"\xc0\xaf")


class ReconFault(enum.StrEnum):
    ROW_DROPPED = "row_dropped"
    ROW_DUPLICATED = "row_duplicated"
    AMOUNT_ALTERED = "amount_altered"
    CURRENCY_ALTERED = "currency_altered"
    FEE_ALTERED = "fee_altered"
    FOREIGN_LINE = "foreign_line"
    FILE_DAMAGED = "file_damaged"


CONTENT = (
    ReconFault.ROW_DROPPED,
    ReconFault.ROW_DUPLICATED,
    ReconFault.AMOUNT_ALTERED,
    ReconFault.CURRENCY_ALTERED,
    ReconFault.FEE_ALTERED,
)

#: fault -> (class, reason) of the item it must produce (file damage produces a refusal).
EXPECTED: dict[ReconFault, tuple[ItemClass, Reason]] = {
    ReconFault.ROW_DROPPED: (ItemClass.INVESTIGATE, Reason.MISSING_FROM_FILE),
    ReconFault.ROW_DUPLICATED: (ItemClass.INVESTIGATE, Reason.DUPLICATE_REFERENCE),
    ReconFault.AMOUNT_ALTERED: (ItemClass.MANUAL_REVIEW, Reason.AMOUNT_DIFFERS),
    ReconFault.CURRENCY_ALTERED: (ItemClass.MANUAL_REVIEW, Reason.CURRENCY_DIFFERS),
    ReconFault.FEE_ALTERED: (ItemClass.MANUAL_REVIEW, Reason.FEE_DIFFERS),
    ReconFault.FOREIGN_LINE: (ItemClass.INVESTIGATE, Reason.UNKNOWN_REFERENCE),
}


@attrs.frozen
class Injected:
    """One fault that fired: on the line of `reference` (or the whole file)."""

    fault: ReconFault
    reference: str
    detail: str = ""


@attrs.frozen
class ReconPlan:
    """Probabilities: the content ones per line (their sum at most 1), the others per file."""

    row_dropped_p: float = 0.0
    row_duplicated_p: float = 0.0
    amount_altered_p: float = 0.0
    currency_altered_p: float = 0.0
    fee_altered_p: float = 0.0
    foreign_line_p: float = 0.0
    file_damaged_p: float = 0.0

    def __attrs_post_init__(self) -> None:
        for field in attrs.fields(ReconPlan):
            value = getattr(self, field.name)
            assert 0.0 <= value <= 1.0, f"{field.name} must be within 0..1, got {value}"
        assert sum(self.p(c) for c in CONTENT) <= 1.0 + 1e-9, "content probabilities > 1"

    def p(self, fault: ReconFault) -> float:
        value: float = getattr(self, f"{fault.value}_p")
        return value

    @classmethod
    def of(cls, faults: Faults) -> ReconPlan:
        """The plan of a scenario's `settlement_*_p` keys (any damage key damages the file)."""
        damaged = (
            faults.settlement_trailer_missing_p
            + faults.settlement_truncated_p
            + faults.settlement_garbage_p
        )
        return cls(
            row_dropped_p=faults.settlement_row_dropped_p,
            row_duplicated_p=faults.settlement_row_duplicated_p,
            amount_altered_p=faults.settlement_amount_altered_p,
            currency_altered_p=faults.settlement_currency_altered_p,
            fee_altered_p=faults.settlement_fee_altered_p,
            foreign_line_p=faults.settlement_unknown_row_p,
            file_damaged_p=min(1.0, damaged),
        )


def _altered_minor(minor: int, rng: random.Random) -> int:
    """A different amount of the same sign: off by one unit or by up to 10%."""
    size = abs(minor)
    delta = 1 if rng.random() < 0.5 else max(1, size * rng.randint(1, 10) // 100)
    new = size + delta if rng.random() < 0.5 or size - delta <= 0 else size - delta
    return new if minor > 0 else -new


def _with_gross(line: SettlementLine, gross: Money) -> SettlementLine:
    fee = Money(line.fee.minor, gross.currency)
    return attrs.evolve(line, gross=gross, fee=fee, net=gross - fee)


def _altered(fault: ReconFault, line: SettlementLine, rng: random.Random) -> SettlementLine:
    if fault is ReconFault.AMOUNT_ALTERED:
        return _with_gross(line, Money(_altered_minor(line.gross.minor, rng), line.currency))
    if fault is ReconFault.CURRENCY_ALTERED:
        other = rng.choice([c for c in ALTERED_CURRENCIES if c != line.currency])
        return _with_gross(line, Money(line.gross.minor, other))
    assert fault is ReconFault.FEE_ALTERED
    fee_minor = line.fee.minor + rng.randint(1, 50) * (1 if rng.random() < 0.5 else -1)
    if fee_minor < 0 or fee_minor == line.fee.minor:
        fee_minor = line.fee.minor + 1
    fee = Money(fee_minor, line.currency)
    return attrs.evolve(line, fee=fee, net=line.gross - fee)


def corrupt_lines(
    lines: Sequence[SettlementLine],
    rng: random.Random,
    plan: ReconPlan,
    *,
    tag: str,
    source: Format,
    booked_at_ms: int,
) -> tuple[list[SettlementLine], list[Injected]]:
    """The lines as the PSP books them under `plan`, and the faults that fired."""
    out: list[SettlementLine] = []
    injected: list[Injected] = []
    for line in lines:
        r = rng.random()
        fault = None
        for candidate in CONTENT:
            if r < plan.p(candidate):
                fault = candidate
                break
            r -= plan.p(candidate)
        if fault is None:
            out.append(line)
            continue
        injected.append(Injected(fault, line.reference, line.psp_reference or ""))
        if fault is ReconFault.ROW_DUPLICATED:
            copy = attrs.evolve(line, psp_reference=f"{line.psp_reference}_dup")
            out += [line, copy]
        elif fault is not ReconFault.ROW_DROPPED:
            out.append(_altered(fault, line, rng))
    if rng.random() < plan.foreign_line_p:
        reference = f"ord_foreign_{tag}_{rng.randrange(10**6):06d}"
        gross = Money(rng.randint(100, 100_000), "USD")
        foreign = SettlementLine(
            source=source,
            line_number=1,
            kind=LineKind.CAPTURE,
            reference=reference,
            psp_reference=f"txn_foreign_{tag}",
            order_reference=reference,
            gross=gross,
            fee=Money.zero("USD"),
            net=gross,
            batch=f"po_{tag}_foreign",
            booked_at_ms=lines[0].booked_at_ms if lines else booked_at_ms,
            value_at_ms=None,
        )
        out.insert(rng.randint(0, len(out)), foreign)
        injected.append(Injected(ReconFault.FOREIGN_LINE, reference))
    return out, injected


def damaged(data: bytes, rng: random.Random) -> bytes:
    """`data` with bytes that are not UTF-8 inserted somewhere: no reader can take it."""
    at = rng.randint(0, len(data))
    return data[:at] + rng.choice(DAMAGE_BYTES) + data[at:]


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
        # Drawn after the keys above, so those stay what earlier seeds drew.
        settlement_fee_altered_p=maybe(0.02),
        settlement_format="adyen" if rng.random() < 0.3 else "stripe",
    )
