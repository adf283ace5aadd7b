"""A reconciliation run and its items, as stored: what one settlement file proved and what it
left for a person.

Why a record of its own: a run is the audit trail of the last line of defence. It is stored
once per file (the file's SHA-256 is unique, so a re-upload finds the earlier run instead of a
second one), with its summary (counts and money per class) and one item per line that is not
simply `matched` (a matched seller payout line is kept, resolved, as the only trace that it
was matched: it posts nothing; auto_fixed items are stored resolved, with the repair as their note;
manual_review and investigate items are stored open until a person resolves them).

Ids are derived, not drawn: the run id from the file's hash, an item id from the run id and
its position, so a run repeated after a crash makes the very same records (idempotent).
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import attrs

from engine.money import Money
from engine.reconciliation.line import Format, Settlement
from engine.reconciliation.match import Action, Item, ItemClass, Matching, Reason

#: The characters of the file hash a run id carries.
RUN_ID_HASH_CHARS = 24
#: The longest resolution note a person may leave on an item.
RESOLUTION_NOTE_CHARS_MAX = 2000


class RunStatus(enum.StrEnum):
    """`clean`: nothing needs a person; `needs_review`: some item is open."""

    CLEAN = "clean"
    NEEDS_REVIEW = "needs_review"


class ItemStatus(enum.StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


#: The only item transition: a person resolves an open item (resolving twice is a no-op).
ITEM_TRANSITIONS: Mapping[ItemStatus, frozenset[ItemStatus]] = {
    ItemStatus.OPEN: frozenset({ItemStatus.RESOLVED}),
    ItemStatus.RESOLVED: frozenset(),
}


def file_hash(data: bytes) -> str:
    """The content hash that recognises a re-upload: SHA-256, lowercase hex."""
    return hashlib.sha256(data).hexdigest()


def run_id_of(digest: str) -> str:
    assert len(digest) == 64, digest
    return f"recon_{digest[:RUN_ID_HASH_CHARS]}"


@attrs.frozen
class ReconRun:
    run_id: str
    file_hash: str
    format: Format
    batch: str | None
    status: RunStatus
    created_at_ms: int
    lines: int
    #: class -> number of items (matched included).
    counts: Mapping[str, int]
    #: class -> currency -> minor units.
    money: Mapping[str, Mapping[str, int]]
    #: PSP batch (payout) id -> (currency, net minor units) the file says it pays: what a bank
    #: deposit naming the batch must be. Empty for a bank statement.
    batches: Mapping[str, tuple[str, int]] = attrs.Factory(dict)

    @property
    def clean(self) -> bool:
        return self.status is RunStatus.CLEAN

    def to_row(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "file_hash": self.file_hash,
            "format": self.format.value,
            "batch": self.batch,
            "status": self.status.value,
            "created_at_ms": self.created_at_ms,
            "lines": self.lines,
            "summary": {
                "counts": dict(self.counts),
                "money": {k: dict(v) for k, v in self.money.items()},
                "batches": {k: list(v) for k, v in self.batches.items()},
            },
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ReconRun:
        summary = row["summary"]
        if isinstance(summary, str):
            summary = json.loads(summary)
        return cls(
            run_id=row["run_id"],
            file_hash=row["file_hash"],
            format=Format(row["format"]),
            batch=row["batch"],
            status=RunStatus(row["status"]),
            created_at_ms=int(row["created_at_ms"]),
            lines=int(row["lines"]),
            counts={str(k): int(v) for k, v in summary["counts"].items()},
            money={
                str(k): {str(c): int(m) for c, m in v.items()} for k, v in summary["money"].items()
            },
            batches={str(k): (str(c), int(m)) for k, (c, m) in summary.get("batches", {}).items()},
        )


@attrs.frozen
class ReconItem:
    item_id: str
    run_id: str
    seq: int
    klass: ItemClass
    reason: Reason
    action: Action
    reference: str
    line_number: int | None
    expected: Money | None
    found: Money | None
    detail: str
    status: ItemStatus
    created_at_ms: int
    resolution_note: str | None = None
    resolved_at_ms: int | None = None

    def to_row(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "run_id": self.run_id,
            "seq": self.seq,
            "class": self.klass.value,
            "reason": self.reason.value,
            "action": self.action.value,
            "reference": self.reference,
            "line_number": self.line_number,
            "expected_currency": None if self.expected is None else self.expected.currency,
            "expected_minor": None if self.expected is None else self.expected.minor,
            "found_currency": None if self.found is None else self.found.currency,
            "found_minor": None if self.found is None else self.found.minor,
            "detail": self.detail,
            "status": self.status.value,
            "created_at_ms": self.created_at_ms,
            "resolution_note": self.resolution_note,
            "resolved_at_ms": self.resolved_at_ms,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ReconItem:
        def money(prefix: str) -> Money | None:
            currency = row[f"{prefix}_currency"]
            return None if currency is None else Money(int(row[f"{prefix}_minor"]), currency)

        line = row["line_number"]
        resolved = row["resolved_at_ms"]
        return cls(
            item_id=row["item_id"],
            run_id=row["run_id"],
            seq=int(row["seq"]),
            klass=ItemClass(row["class"]),
            reason=Reason(row["reason"]),
            action=Action(row["action"]),
            reference=row["reference"],
            line_number=None if line is None else int(line),
            expected=money("expected"),
            found=money("found"),
            detail=row["detail"],
            status=ItemStatus(row["status"]),
            created_at_ms=int(row["created_at_ms"]),
            resolution_note=row["resolution_note"],
            resolved_at_ms=None if resolved is None else int(resolved),
        )

    def resolved(self, note: str, now_ms: int) -> ReconItem:
        """This item resolved by a person with `note` (an already resolved item is unchanged)."""
        if self.status is ItemStatus.RESOLVED:
            return self
        assert ItemStatus.RESOLVED in ITEM_TRANSITIONS[self.status]
        return attrs.evolve(
            self, status=ItemStatus.RESOLVED, resolution_note=note, resolved_at_ms=now_ms
        )


def build_run(
    data: bytes, settlement: Settlement, matching: Matching, now_ms: int
) -> tuple[ReconRun, tuple[ReconItem, ...]]:
    """The run record of `data` and its stored items (every item but the matched ones)."""
    digest = file_hash(data)
    run_id = run_id_of(digest)
    counts = {klass.value: matching.count(klass) for klass in ItemClass}
    money = {klass.value: matching.money(klass) for klass in ItemClass}
    status = RunStatus.CLEAN if matching.clean else RunStatus.NEEDS_REVIEW
    run = ReconRun(
        run_id,
        digest,
        settlement.source,
        settlement.batch,
        status,
        now_ms,
        len(settlement.lines),
        counts,
        money,
        batches_of(settlement),
    )
    items = tuple(
        _stored(run_id, seq, item, now_ms)
        for seq, item in enumerate(
            i
            for i in matching.items
            if i.klass is not ItemClass.MATCHED or i.action is Action.KEEP_MATCH
        )
    )
    return run, items


def batches_of(settlement: Settlement) -> dict[str, tuple[str, int]]:
    """Per PSP batch, the net its lines pay (a batch is one currency; a file of a batch in two
    currencies is not a batch a deposit can pay, and is left out)."""
    nets: dict[str, dict[str, int]] = {}
    if settlement.source is Format.CAMT053:
        return {}
    for line in settlement.lines:
        if line.batch is not None:
            per = nets.setdefault(line.batch, {})
            per[line.currency] = per.get(line.currency, 0) + line.net.minor
    return {b: next(iter(per.items())) for b, per in sorted(nets.items()) if len(per) == 1}


def _stored(run_id: str, seq: int, item: Item, now_ms: int) -> ReconItem:
    fixed = item.klass is ItemClass.AUTO_FIXED
    kept = item.action is Action.KEEP_MATCH
    return ReconItem(
        item_id=f"{run_id}_{seq:06d}",
        run_id=run_id,
        seq=seq,
        klass=item.klass,
        reason=item.reason,
        action=item.action,
        reference=item.reference,
        line_number=item.line_number,
        expected=item.expected,
        found=item.found,
        detail=item.detail,
        status=ItemStatus.RESOLVED if fixed or kept else ItemStatus.OPEN,
        created_at_ms=now_ms,
        resolution_note=(
            f"repaired: {item.action.value}" if fixed else "matched" if kept else None
        ),
        resolved_at_ms=now_ms if fixed or kept else None,
    )
