"""Corruption faults for the files the world sends us (PSP settlement files, bank statements).

Why: reconciliation exists because these files are wrong in practice. Two families, each
fault drawn from a seeded `random.Random` with the fault plan's probabilities, each returned as
an `Applied` record so the world counts it when it fires:

- **Content faults**, per row: the sender's books are wrong, but the file is well-formed (its
  totals are recomputed from the wrong rows), so only matching against the ledger (or the clean
  copy) reveals them: a row dropped, duplicated, its amount altered, its currency altered.
- **Transport faults**, per file: the bytes were damaged on the way and a strict parser must
  refuse the file: an unknown record added, the trailer missing, the file truncated mid-line,
  garbage bytes inserted. At most one of truncation / garbage / missing trailer per file, so
  the parser's verdict names the fault that fired; an unknown record may come with one of them.

The functions are pure given the rng: the same rng state gives the same corruption.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Sequence
from typing import TypeVar

import attrs

from scenarios import Faults

R = TypeVar("R")

#: Garbage is at most this many bytes at one place.
GARBAGE_BYTES_MAX = 16
#: Bytes a garbage fault draws from: neither printable ASCII nor a line break.
GARBAGE_ALPHABET = bytes([*range(0x00, 0x0A), *range(0x0B, 0x20), *range(0x7F, 0x100)])


class Corruption(enum.StrEnum):
    ROW_DROPPED = "row_dropped"
    ROW_DUPLICATED = "row_duplicated"
    AMOUNT_ALTERED = "amount_altered"
    CURRENCY_ALTERED = "currency_altered"
    UNKNOWN_ROW = "unknown_row"
    TRAILER_MISSING = "trailer_missing"
    TRUNCATED = "truncated"
    GARBAGE = "garbage"


CONTENT = (
    Corruption.ROW_DROPPED,
    Corruption.ROW_DUPLICATED,
    Corruption.AMOUNT_ALTERED,
    Corruption.CURRENCY_ALTERED,
)
TRANSPORT = (Corruption.TRAILER_MISSING, Corruption.TRUNCATED, Corruption.GARBAGE)


@attrs.frozen
class CorruptionPlan:
    """Probabilities: the content ones per row (at most one per row), the others per file."""

    row_dropped_p: float = 0.0
    row_duplicated_p: float = 0.0
    amount_altered_p: float = 0.0
    currency_altered_p: float = 0.0
    unknown_row_p: float = 0.0
    trailer_missing_p: float = 0.0
    truncated_p: float = 0.0
    garbage_p: float = 0.0

    def __attrs_post_init__(self) -> None:
        for field in attrs.fields(CorruptionPlan):
            value = getattr(self, field.name)
            assert 0.0 <= value <= 1.0, f"{field.name} must be within 0..1, got {value}"
        assert sum(self.p(c) for c in CONTENT) <= 1.0 + 1e-9, "content probabilities > 1"
        assert sum(self.p(c) for c in TRANSPORT) <= 1.0 + 1e-9, "transport probabilities > 1"

    def p(self, corruption: Corruption) -> float:
        value: float = getattr(self, f"{corruption.value}_p")
        return value

    @classmethod
    def settlement(cls, faults: Faults) -> CorruptionPlan:
        """The plan for PSP settlement files, from the scenario's `settlement_*_p` keys."""
        return cls(**{f.name: getattr(faults, f"settlement_{f.name}") for f in attrs.fields(cls)})


@attrs.frozen
class Applied:
    """One corruption that fired, and where (a row's reference, or a byte offset)."""

    corruption: Corruption
    detail: str


def _pick(
    rng: random.Random, plan: CorruptionPlan, kinds: Sequence[Corruption]
) -> Corruption | None:
    r = rng.random()
    for kind in kinds:
        p = plan.p(kind)
        if r < p:
            return kind
        r -= p
    return None


def corrupt_rows(
    rows: Sequence[R],
    rng: random.Random,
    plan: CorruptionPlan,
    *,
    describe: Callable[[R], str],
    alter_amount: Callable[[R, random.Random], R],
    alter_currency: Callable[[R, random.Random], R] | None,
) -> tuple[list[R], list[Applied]]:
    """The content faults: each row draws once; returns the rows as the sender books them."""
    out: list[R] = []
    applied: list[Applied] = []
    for row in rows:
        kind = _pick(rng, plan, CONTENT)
        if kind is Corruption.CURRENCY_ALTERED and alter_currency is None:
            kind = None  # a single-currency file (a bank account) cannot change currency
        if kind is None:
            out.append(row)
            continue
        applied.append(Applied(kind, describe(row)))
        if kind is Corruption.ROW_DUPLICATED:
            out += [row, row]
        elif kind is Corruption.AMOUNT_ALTERED:
            out.append(alter_amount(row, rng))
        elif kind is Corruption.CURRENCY_ALTERED:
            assert alter_currency is not None
            out.append(alter_currency(row, rng))
        # ROW_DROPPED: nothing appended
    return out, applied


def altered_minor(minor: int, rng: random.Random) -> int:
    """A different non-zero amount of the same sign: off by one unit or by up to 10%."""
    assert minor != 0
    size = abs(minor)
    delta = 1 if rng.random() < 0.5 else max(1, size * rng.randint(1, 10) // 100)
    new = size + delta if rng.random() < 0.5 or size - delta <= 0 else size - delta
    return new if minor > 0 else -new


def corrupt_bytes(
    data: bytes,
    rng: random.Random,
    plan: CorruptionPlan,
    *,
    trailer_prefix: bytes,
    unknown_line: bytes,
) -> tuple[bytes, list[Applied]]:
    """The transport faults on a rendered file (lines ending in '\\n', the header first)."""
    applied: list[Applied] = []
    if rng.random() < plan.unknown_row_p:
        lines = data.split(b"\n")[:-1]
        at = rng.randint(1, len(lines))
        lines.insert(at, unknown_line)
        data = b"\n".join(lines) + b"\n"
        applied.append(Applied(Corruption.UNKNOWN_ROW, f"line {at + 1}"))
    kind = _pick(rng, plan, TRANSPORT)
    if kind is Corruption.TRAILER_MISSING:
        lines = data.split(b"\n")[:-1]
        kept = [line for line in lines if not line.startswith(trailer_prefix)]
        data = b"\n".join(kept) + b"\n" if kept else b""
        applied.append(Applied(kind, f"{len(lines) - len(kept)} line(s)"))
    elif kind is Corruption.TRUNCATED:
        cut = rng.randint(1, max(1, len(data) - 1))
        while cut > 1 and data[cut - 1 : cut] == b"\n":
            cut -= 1  # cut inside a line, so the damage shows as truncation
        data = data[:cut]
        applied.append(Applied(kind, f"at byte {cut}"))
    elif kind is Corruption.GARBAGE:
        at = rng.randint(0, len(data))
        size = rng.randint(1, GARBAGE_BYTES_MAX)
        junk = bytes(rng.choice(GARBAGE_ALPHABET) for _ in range(size))
        data = data[:at] + junk + data[at:]
        applied.append(Applied(kind, f"{size} byte(s) at {at}"))
    return data, applied
