"""The memory store's refunds: the committed table and a unit of work's overlay of it.

Split from memory_unit.py so that file keeps to payments, orders, the ledger and the outbox.
Same rules as the `refunds` table of migration 0005: unique refund id and creation key, the
order must exist, optimistic versions, `unfinished` while REQUESTED or SUBMITTED.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from engine.errors import DuplicateKey, NotFound, VersionConflict
from engine.records import PaymentOrder, Refund, evolve
from engine.states import is_terminal


class RefundTable:
    """The committed refunds, indexed by creation key, by order and by unfinishedness."""

    def __init__(self) -> None:
        self.rows: dict[str, Refund] = {}
        self.by_key: dict[str, str] = {}
        self.by_order: dict[str, list[str]] = defaultdict(list)
        self.unfinished: set[str] = set()

    def page(self, ids: list[str], limit: int, after: str | None) -> list[Refund]:
        assert 0 < limit <= 1000, f"limit {limit} is outside 1..1000"
        chosen = sorted(i for i in ids if after is None or i > after)
        return [self.rows[i] for i in chosen[:limit]]


class RefundOverlay:
    """One unit of work's inserted and updated refunds, validated and applied at its commit."""

    def __init__(self, table: RefundTable) -> None:
        self._t = table
        self.rows: dict[str, Refund] = {}
        self.base: dict[str, int | None] = {}  # None: inserted by this unit

    def insert(self, refund: Refund, get_order: Callable[[str], PaymentOrder | None]) -> None:
        if refund.refund_id in self._t.rows or refund.refund_id in self.rows:
            raise DuplicateKey("refunds.refund_id", refund.refund_id)
        if self.by_creation_key(refund.creation_key) is not None:
            raise DuplicateKey("refunds.creation_key", refund.creation_key)
        if get_order(refund.order_id) is None:
            raise NotFound(f"payment order {refund.order_id} does not exist")
        self.rows[refund.refund_id] = refund
        self.base[refund.refund_id] = None

    def update(self, refund: Refund) -> Refund:
        current = self.get(refund.refund_id)
        if current is None:
            raise NotFound(f"refund {refund.refund_id} does not exist")
        if current.version != refund.version:
            raise VersionConflict(
                f"refund {refund.refund_id} is at version {current.version}, not {refund.version}"
            )
        assert current.creation_key == refund.creation_key, "creation_key is immutable"
        assert current.order_id == refund.order_id, "order_id is immutable"
        updated = evolve(refund, version=refund.version + 1)
        self.base.setdefault(refund.refund_id, current.version)
        self.rows[refund.refund_id] = updated
        return updated

    def get(self, refund_id: str) -> Refund | None:
        return self.rows.get(refund_id) or self._t.rows.get(refund_id)

    def by_creation_key(self, creation_key: str) -> Refund | None:
        for refund in self.rows.values():
            if refund.creation_key == creation_key:
                return refund
        refund_id = self._t.by_key.get(creation_key)
        return None if refund_id is None else self.get(refund_id)

    def of_order(self, order_id: str, limit: int, after: str | None) -> list[Refund]:
        assert 0 < limit <= 1000, f"limit {limit} is outside 1..1000"
        ids = set(self._t.by_order.get(order_id, ()))
        ids.update(r.refund_id for r in self.rows.values() if r.order_id == order_id)
        chosen = sorted(i for i in ids if after is None or i > after)[:limit]
        found = [self.get(i) for i in chosen]
        return [r for r in found if r is not None]

    def validate(self, order_exists: Callable[[str], bool]) -> None:
        t = self._t
        for refund_id, base in self.base.items():
            committed = t.rows.get(refund_id)
            if base is None:
                refund = self.rows[refund_id]
                if committed is not None:
                    raise DuplicateKey("refunds.refund_id", refund_id)
                if refund.creation_key in t.by_key:
                    raise DuplicateKey("refunds.creation_key", refund.creation_key)
                if not order_exists(refund.order_id):
                    raise NotFound(f"payment order {refund.order_id} does not exist")
            elif committed is None or committed.version != base:
                raise VersionConflict(f"refund {refund_id} changed since it was read")

    def apply(self) -> None:
        t = self._t
        for refund_id, refund in self.rows.items():
            if self.base[refund_id] is None:
                t.by_key[refund.creation_key] = refund_id
                t.by_order[refund.order_id].append(refund_id)
            t.rows[refund_id] = refund
            if is_terminal(refund.status):
                t.unfinished.discard(refund_id)
            else:
                t.unfinished.add(refund_id)
