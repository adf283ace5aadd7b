"""The reconciler: one settlement file through parse (engine), match (pure) and act.

    reconciler = Reconciler(store, clock, ids, tell=engine.system.tell, contract=...)
    outcome = await reconciler.reconcile(data)          # ParseError if the file is unusable

Acting is the normal path, never a shortcut: what a line proves is posted through the ledger's
rules (engine/reconciliation/posting.py) under a unique `(kind, reference)`, so it posts once;
a capture the PSP made that we never heard of is handed to its order actor (`QueryCapture`:
it asks the PSP by key and books it, exactly as after a timeout), a refund likewise to its
refund actor (`QueryRefund`). manual_review and investigate items are stored open for a person.

Idempotent: a file already run (same SHA-256) returns the earlier run and does nothing. The run
is recorded after its postings, so a crash in between repeats the run: its postings are found
(their description names the run), nothing posts twice, and the same records are written
(ids derive from the file's hash).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs

from actors.messages import ORDER, REFUND, QueryCapture, QueryDispute, QueryRefund
from actors.payout_messages import MERCHANT, QueryPayout
from actors.recon_facts import Window, ledger_facts
from engine.errors import DuplicateKey
from engine.ids import Ids
from engine.ledger import Entry, Transaction, TransactionKind
from engine.ports import Clock
from engine.reconciliation import Format, Settlement, parse
from engine.reconciliation.match import Action, Item, ItemClass, Matching, match
from engine.reconciliation.posting import DESCRIPTION_SEPARATOR, posting_of
from engine.reconciliation.run import ReconItem, ReconRun, build_run, file_hash, run_id_of
from engine.store.port import ReconciledStore as Store

log = logging.getLogger("payengine.reconciler")

#: How an auto_fixed repair reaches an actor: `tell(kind, key, message)` (ActorSystem.tell).
Tell = Callable[[str, str, Any], Awaitable[None]]

__all__ = ["FeeContract", "Outcome", "Reconciler", "Window"]


@attrs.frozen
class FeeContract:
    """The PSP's contracted fee per capture: basis points plus a fixed part per currency."""

    fee_bps: int
    fixed_minor: Mapping[str, int] = attrs.Factory(dict)


@attrs.frozen
class Outcome:
    run: ReconRun
    #: Every item of the matching, matched ones included (empty for a repeated file).
    items: tuple[Item, ...]
    #: The stored items (all but the matched ones).
    stored: tuple[ReconItem, ...]
    #: The file was run before: `run` is the earlier run, nothing was done.
    repeated: bool = False
    dry_run: bool = False
    #: Ledger transactions this run posted.
    posted: int = 0

    @property
    def clean(self) -> bool:
        return self.run.clean


class Reconciler:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        ids: Ids,
        *,
        tell: Tell | None = None,
        contract: FeeContract | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.ids = ids
        self.tell = tell
        self.contract = contract

    async def reconcile(
        self,
        data: bytes,
        format: Format | None = None,
        *,
        window: Window | None = None,
        dry_run: bool = False,
    ) -> Outcome:
        """Run `data`; raises ParseError (nothing written) when the file is unusable."""
        settlement = parse(data, format)
        digest = file_hash(data)
        earlier = await self.store.get_recon_run_by_hash(digest)
        if earlier is not None:
            stored = await self.store.list_recon_items(1000, run_id=earlier.run_id)
            return Outcome(earlier, (), tuple(stored), repeated=True, dry_run=dry_run)
        run_id = run_id_of(digest)
        facts = await ledger_facts(self.store, settlement, run_id, window)
        if self.contract is not None:
            facts = attrs.evolve(
                facts, fee_bps=self.contract.fee_bps, fee_fixed_minor=self.contract.fixed_minor
            )
        matching = match(settlement, facts)
        run, items = build_run(data, settlement, matching, self.clock.now_ms())
        if dry_run:
            return Outcome(run, matching.items, items, dry_run=True)
        posted = await self._act(run_id, settlement, matching)
        kept = await self.store.record_recon_run(run, items)
        log.info(
            "reconciled %s (%s, %d lines): %s", run_id, run.format, run.lines, dict(run.counts)
        )
        return Outcome(kept, matching.items, items, repeated=kept != run, posted=posted)

    async def _act(self, run_id: str, settlement: Settlement, matching: Matching) -> int:
        lines = {line.line_number: line for line in settlement.lines}
        posted = 0
        for item in matching.items:
            if item.klass not in (ItemClass.MATCHED, ItemClass.AUTO_FIXED):
                continue
            assert item.line_number is not None, item
            line = lines[item.line_number]
            if item.action in (
                Action.POST_SETTLEMENT,
                Action.COMPLETE_ORDER,
                Action.QUERY_REFUND,
                Action.QUERY_DISPUTE,
                Action.POST_FEE,
            ):
                posted += await self._post(run_id, line.line_number, posting_of(line), item)
            if item.action is Action.COMPLETE_ORDER and self.tell is not None:
                await self.tell(ORDER, item.reference, QueryCapture())
            elif item.action is Action.QUERY_REFUND and self.tell is not None:
                order_id = await self._order_of_refund(item.reference)
                if order_id is not None:
                    await self.tell(REFUND, order_id, QueryRefund(item.reference))
            elif item.action is Action.QUERY_DISPUTE and self.tell is not None:
                # The order's refund actor owns its disputes (actors/dispute.py): it asks the
                # PSP and records what it says, as after a lost webhook.
                dispute = await self.store.get_dispute(item.reference)
                order_id = dispute.order_id if dispute is not None else line.order_reference
                if order_id is not None:
                    await self.tell(REFUND, order_id, QueryDispute(item.reference))
            elif item.action is Action.QUERY_PAYOUT and self.tell is not None:
                payout = await self.store.get_payout(item.reference)
                if payout is not None:
                    await self.tell(MERCHANT, payout.merchant_id, QueryPayout(item.reference))
        return posted

    async def _order_of_refund(self, refund_id: str) -> str | None:
        refund = await self.store.get_refund(refund_id)
        return None if refund is None else refund.order_id

    async def _post(
        self,
        run_id: str,
        line_number: int,
        posting: tuple[TransactionKind, str, tuple[Entry, ...]] | None,
        item: Item,
    ) -> int:
        if posting is None:
            return 0
        kind, reference, entries = posting
        txn = Transaction(
            txn_id=self.ids.new("txn"),
            kind=kind,
            reference=reference,
            entries=entries,
            created_at_ms=self.clock.now_ms(),
            description=f"{run_id}{DESCRIPTION_SEPARATOR}line {line_number}, {item.reason}",
        )
        try:
            async with self.store.unit_of_work() as uow:
                if await uow.get_transaction_by_reference(kind, reference) is not None:
                    return 0  # this run posted it before a crash (facts said: not settled)
                await uow.post_transaction(txn)
        except DuplicateKey:
            return 0
        return 1
