"""Measure how the settlement parsers meet damage: 200 seeded mutations of each fixture.

Why: issue 12 found that 37 of 200 seeded mutations of a v1 file were accepted with different
content. This script measures the same for the real formats (docs/reconciliation.md quotes it):
each mutation (a byte replaced, inserted or deleted, a line duplicated or dropped, two fields of
a line swapped) is either refused, read back unchanged, or read back with different content.

    .venv/bin/python tests/unit/data/measure_recon_mutations.py
"""

from __future__ import annotations

import collections
import random
from pathlib import Path

import attrs

from engine.reconciliation import ParseError, Settlement, parse

HERE = Path(__file__).resolve().parent / "recon"
MUTATIONS_PER_FILE = 200
SEED = 12
ALPHABET = b'0123456789.,-"abcXYZ '


def content(settlement: Settlement) -> tuple[object, ...]:
    return (
        tuple(attrs.evolve(line, line_number=1) for line in settlement.lines),
        settlement.statements,
    )


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    kind = rng.choice(["replace", "insert", "delete", "duplicate_line", "drop_line", "swap_fields"])
    raw = bytearray(data)
    lines = data.split(b"\n")
    at = rng.randrange(len(raw))
    row = rng.randrange(1, len(lines))
    if kind == "replace":
        raw[at] = rng.choice(ALPHABET)
    elif kind == "insert":
        raw[at:at] = bytes([rng.choice(ALPHABET)])
    elif kind == "delete":
        del raw[at]
    elif kind == "duplicate_line":
        lines.insert(row, lines[row])
        raw = bytearray(b"\n".join(lines))
    elif kind == "drop_line":
        del lines[row]
        raw = bytearray(b"\n".join(lines))
    else:
        fields = lines[row].split(b",")
        if len(fields) > 2:
            i, j = rng.sample(range(len(fields)), 2)
            fields[i], fields[j] = fields[j], fields[i]
        lines[row] = b",".join(fields)
        raw = bytearray(b"\n".join(lines))
    return kind, bytes(raw)


def main() -> None:
    rng = random.Random(SEED)
    for path in sorted(HERE.iterdir()):
        data = path.read_bytes()
        clean = content(parse(data))
        verdicts: collections.Counter[str] = collections.Counter()
        different: collections.Counter[str] = collections.Counter()
        for _ in range(MUTATIONS_PER_FILE):
            kind, mutated = mutate(data, rng)
            try:
                settlement = parse(mutated)
            except ParseError:
                verdicts["refused"] += 1
                continue
            if content(settlement) == clean:
                verdicts["unchanged"] += 1
            else:
                verdicts["different"] += 1
                different[kind] += 1
        print(f"{path.name:30} {dict(verdicts)}  different by mutation: {dict(different)}")


if __name__ == "__main__":
    main()
