"""The memory store's disputes: the committed table and a unit of work's overlay of it.

Same rules as the `disputes` table of migration 0007: a unique dispute id (the PSP's), the
order must exist, optimistic versions, `unfinished` while OPEN. Kept apart from memory_unit.py
as refunds are (memory_refunds.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from engine.errors import DuplicateKey, NotFound, VersionConflict
from engine.records import Dispute, PaymentOrder, evolve
from engine.states import is_terminal


def _check_limit(limit: int) -> None:
    assert 0 < limit <= 1000, f"limit {limit} is outside 1..1000"


class DisputeTable:
    """The committed disputes, indexed by order and by unfinishedness."""

    def __init__(self) -> None:
        self.rows: dict[str, Dispute] = {}
        self.by_order: dict[str, list[str]] = defaultdict(list)
        self.unfinished: set[str] = set()

    def page(
        self, ids: list[str], limit: int, after: str | None, keep: Callable[[Dispute], bool]
    ) -> list[Dispute]:
        _check_limit(limit)
        chosen = sorted(i for i in ids if after is None or i > after)
        found: list[Dispute] = []
        for dispute_id in chosen:
            dispute = self.rows[dispute_id]
            if keep(dispute):
                found.append(dispute)
                if len(found) == limit:
                    break
        return found


class DisputeOverlay:
    """One unit of work's inserted and updated disputes, validated and applied at its commit."""

    def __init__(self, table: DisputeTable) -> None:
        self._t = table
        self.rows: dict[str, Dispute] = {}
        self.base: dict[str, int | None] = {}  # None: inserted by this unit

    def insert(self, dispute: Dispute, get_order: Callable[[str], PaymentOrder | None]) -> None:
        if dispute.dispute_id in self._t.rows or dispute.dispute_id in self.rows:
            raise DuplicateKey("disputes.dispute_id", dispute.dispute_id)
        if get_order(dispute.order_id) is None:
            raise NotFound(f"payment order {dispute.order_id} does not exist")
        self.rows[dispute.dispute_id] = dispute
        self.base[dispute.dispute_id] = None

    def update(self, dispute: Dispute) -> Dispute:
        current = self.get(dispute.dispute_id)
        if current is None:
            raise NotFound(f"dispute {dispute.dispute_id} does not exist")
        if current.version != dispute.version:
            raise VersionConflict(
                f"dispute {dispute.dispute_id} is at version {current.version}, "
                f"not {dispute.version}"
            )
        assert current.order_id == dispute.order_id, "order_id is immutable"
        updated = evolve(dispute, version=dispute.version + 1)
        self.base.setdefault(dispute.dispute_id, current.version)
        self.rows[dispute.dispute_id] = updated
        return updated

    def get(self, dispute_id: str) -> Dispute | None:
        return self.rows.get(dispute_id) or self._t.rows.get(dispute_id)

    def of_order(self, order_id: str, limit: int, after: str | None) -> list[Dispute]:
        _check_limit(limit)
        ids = set(self._t.by_order.get(order_id, ()))
        ids.update(d.dispute_id for d in self.rows.values() if d.order_id == order_id)
        chosen = sorted(i for i in ids if after is None or i > after)[:limit]
        found = [self.get(i) for i in chosen]
        return [d for d in found if d is not None]

    def validate(self, order_exists: Callable[[str], bool]) -> None:
        t = self._t
        for dispute_id, base in self.base.items():
            committed = t.rows.get(dispute_id)
            if base is None:
                if committed is not None:
                    raise DuplicateKey("disputes.dispute_id", dispute_id)
                if not order_exists(self.rows[dispute_id].order_id):
                    raise NotFound(f"payment order {self.rows[dispute_id].order_id} does not exist")
            elif committed is None or committed.version != base:
                raise VersionConflict(f"dispute {dispute_id} changed since it was read")

    def apply(self) -> None:
        t = self._t
        for dispute_id, dispute in self.rows.items():
            if self.base[dispute_id] is None:
                t.by_order[dispute.order_id].append(dispute_id)
            t.rows[dispute_id] = dispute
            if is_terminal(dispute.status):
                t.unfinished.discard(dispute_id)
            else:
                t.unfinished.add(dispute_id)
