"""The nightly reconciliation of a simulated world: the fake PSP's report and the fake bank's
statements, written in the real formats, damaged by the plan, and run through the reconciler.

At each settlement cutoff (every virtual UTC midnight, or every `settlement_interval_s`), and
once more when the run ends for the partial last batch, the desk writes the batch's PSP report
(Stripe-shaped, or Adyen's per `settlement_format`) from the fake PSP's books, injects the
plan's discrepancies (simulator/recon_faults.py) and records them as ground truth, then writes
the bank's camt.053 statement per currency: one deposit per PSP payout (batch), of the batch's
true net; and, when payouts are on, the bank's camt.053 of the seller payouts it paid and
returned in the window (simulator/bank_camt.py). Each file is then reconciled inside the
current engine incarnation (a request, so a crash or a database outage interrupts it like any
other; the desk tries again at the next tick, and the reconciler is idempotent). A damaged
report is refused with a located error, and the PSP sends it again undamaged.

The rng stream is `"<seed>:settlement"`, so the files' faults never shift the traffic, PSP or
webhook streams. simulator/oracle_recon.py judges what the runs reported against the truth.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import attrs
import trio

from actors.engine import Engine
from actors.reconciler import Outcome, Reconciler, Window
from engine.money import Money
from engine.reconciliation import (
    Format,
    LineKind,
    ParseError,
    SettlementLine,
    StatementFacts,
    parse,
    write_camt053,
)
from engine.reconciliation.match import ItemClass, Reason
from engine.reconciliation.match_out import UNHEARD_PAYOUT
from engine.states import DisputeStatus, OrderStatus, RefundStatus
from scenarios import Faults
from simulator.bank import FakeBank
from simulator.bank_camt import payout_statements
from simulator.determinism import stream
from simulator.fake_psp import FakePsp
from simulator.psp_reports import CONTRACT, DAY_MS, psp_lines, write_report
from simulator.recon_faults import Injected, ReconFault, ReconPlan, corrupt_lines, damaged

#: (reference, class, reason): one reported item, as the oracle compares them.
Key = tuple[str, ItemClass, Reason]
Request = Callable[[Callable[[Engine], Awaitable[Any]]], Awaitable[Any]]


@attrs.frozen
class Delivery:
    file_id: str
    data: bytes
    #: The bookings a PSP report must contain (None for a bank statement).
    window: Window | None
    damaged: bool = False
    #: The index in `days` of the PSP report's day (None for a bank statement).
    day: int | None = None


@attrs.frozen
class DayTruth:
    """One day's report as the PSP meant it and as it was sent, and what was done to it."""

    tag: str
    clean: tuple[SettlementLine, ...]
    sent: tuple[SettlementLine, ...]
    injected: tuple[Injected, ...]
    #: Per batch of the clean report: its currency and net (what the bank deposits).
    deposits: dict[str, Money]


@attrs.frozen
class RunRecord:
    """What one delivery's reconciliation gave: a run's stored items, or a refusal."""

    file_id: str
    damaged: bool
    run_id: str | None
    items: tuple[Key, ...]
    error: str | None
    #: (reference, reason) of the lines whose capture or refund the engine had not booked when
    #: the run started: the only ones that may come back auto_fixed.
    unheard: frozenset[tuple[str, Reason]]


class ReconDesk:
    def __init__(
        self,
        psp: FakePsp,
        seed: int,
        faults: Faults,
        *,
        start_ms: int,
        request: Request,
        on_fault: Callable[..., None],
        note: Callable[..., None],
    ) -> None:
        self.psp = psp
        self.rng = stream(seed, "settlement")
        self.plan = ReconPlan.of(faults)
        self.format = Format(faults.settlement_format)
        self.request = request
        self.on_fault = on_fault
        self.note = note
        self.cutoff_ms = start_ms
        self.interval_ms = round(faults.settlement_interval_s * 1000)
        self.days: list[DayTruth] = []
        self.pending: list[Delivery] = []
        self.records: list[RunRecord] = []
        #: Every file as delivered: (file id, bytes, damaged), for `--settlement-dir`.
        self.files: list[tuple[str, bytes, bool]] = []
        self._bank_balance: Counter[str] = Counter()
        self._bank_seq = 0
        #: One drain at a time (the minute tick and the run's end may both drain).
        self._draining = trio.Lock()
        #: The run ended: the final files are out, the tick makes no more.
        self._closed = False
        self._rng_unheard = stream(seed, "capture_unheard")
        self._unheard_p = faults.psp_capture_unheard_p
        #: The fake bank the payout provider pays sellers from (set by the world when payouts
        #: are on): its camt.053 statements are reconciled with the PSP's files.
        self.payout_bank: FakeBank | None = None
        #: Withheld captures a reconciled report made the PSP answer for again: each must come
        #: back auto_fixed `capture_not_heard` (unless its line was altered or dropped).
        self.heard_by_file: set[str] = set()

    def withholder(self, faults_on: Callable[[], bool]) -> Callable[[str], bool]:
        """The fake PSP's `withhold` hook: the `psp_capture_unheard_p` fault (faults on)."""

        def withhold(key: str) -> bool:
            if self._unheard_p <= 0 or not faults_on():
                return False
            if self._rng_unheard.random() >= self._unheard_p:
                return False
            self.on_fault("psp_capture_unheard", key)
            return True

        return withhold

    # --- producing files ---------------------------------------------------------------------
    def _next_end(self) -> int:
        return (self.cutoff_ms // self.interval_ms + 1) * self.interval_ms

    def _produce(self, end_ms: int) -> None:
        start_ms = self.cutoff_ms
        moment = dt.datetime.fromtimestamp(start_ms / 1000, tz=dt.UTC)
        tag = moment.strftime("%Y%m%d" if self.interval_ms % DAY_MS == 0 else "%Y%m%dT%H%M%S")
        clean = psp_lines(self.psp, start_ms, end_ms, tag, self.format)
        sent, injected = corrupt_lines(
            clean, self.rng, self.plan, tag=tag, source=self.format, booked_at_ms=start_ms
        )
        for fault in injected:
            self.on_fault(f"settlement_{fault.fault.value}", tag, fault.reference)
        data = write_report(sent, self.format)
        file_id = f"psp-{self.format}-{tag}"
        window = Window(start_ms, end_ms)
        if self.rng.random() < self.plan.file_damaged_p:
            self.on_fault(f"settlement_{ReconFault.FILE_DAMAGED.value}", tag)
            injected.append(Injected(ReconFault.FILE_DAMAGED, file_id))
            self.pending.append(
                Delivery(file_id, damaged(data, self.rng), window, damaged=True, day=len(self.days))
            )
        self.pending.append(Delivery(file_id, data, window, day=len(self.days)))
        deposits: dict[str, Money] = {}
        for line in clean:
            assert line.batch is not None
            deposits[line.batch] = deposits.get(line.batch, Money.zero(line.currency)) + line.net
        deposits = {b: n for b, n in sorted(deposits.items()) if n.minor > 0}
        self.days.append(DayTruth(tag, tuple(clean), tuple(sent), tuple(injected), deposits))
        self._statements(tag, end_ms, deposits)
        if self.payout_bank is not None:
            # The bank's statements of the seller payouts it carried in the window: each must
            # list the payouts the engine booked as paid or returned in it (simulator/bank_camt).
            for file_id, data in payout_statements(self.payout_bank, start_ms, end_ms, tag):
                self.pending.append(Delivery(file_id, data, window))
        self.cutoff_ms = end_ms

    def _statements(self, tag: str, end_ms: int, deposits: dict[str, Money]) -> None:
        """The bank's camt.053 per currency: the day's deposits of the PSP's payouts."""
        by_currency: dict[str, list[SettlementLine]] = {}
        for batch, net in deposits.items():
            self._bank_seq += 1
            line = SettlementLine(
                source=Format.CAMT053,
                line_number=1,
                kind=LineKind.DEPOSIT,
                reference=batch,
                psp_reference=f"BANK-{self._bank_seq:08d}",
                order_reference=None,
                gross=net,
                fee=Money.zero(net.currency),
                net=net,
                batch=None,
                booked_at_ms=end_ms - 1,
                value_at_ms=None,
            )
            by_currency.setdefault(net.currency, []).append(line)
        for currency, lines in sorted(by_currency.items()):
            opening = self._bank_balance[currency]
            closing = opening + sum(line.net.minor for line in lines)
            self._bank_balance[currency] = closing
            facts = StatementFacts(
                statement_id=f"STMT-{currency}-{tag}",
                account=f"PAYENGINE{currency}",
                currency=currency,
                opening=Money(opening, currency),
                closing=Money(closing, currency),
                created_at_ms=end_ms,
                entries_count=len(lines),
            )
            data = write_camt053(facts, lines)
            self.pending.append(Delivery(f"bank-{currency.lower()}-{tag}", data, None))

    # --- reconciling them --------------------------------------------------------------------
    async def tick(self, now_ms: int) -> None:
        """Produce the file of every day that ended at or before `now_ms`, then run what waits."""
        if self._closed:
            return
        while self._next_end() <= now_ms:
            self._produce(self._next_end())
        await self.drain()

    async def final(self, now_ms: int, *, retry_s: float) -> None:
        """The run ends: the remaining batches, then the partial one `now_ms` falls in, all
        reconciled (every `retry_s` while the engine is down)."""
        while self._next_end() <= now_ms:
            self._produce(self._next_end())
        if now_ms >= self.cutoff_ms or not self.days:
            self._produce(max(now_ms + 1, self.cutoff_ms + 1))
        self._closed = True
        await self.drain()
        while self.pending:  # the engine was down: it comes back
            await trio.sleep(retry_s)
            await self.drain()

    async def drain(self) -> None:
        """Run the waiting files in order; stop at the first the engine could not take."""
        async with self._draining:
            await self._drain()

    async def _drain(self) -> None:
        while self.pending:
            delivery = self.pending[0]
            record = await self.request(functools.partial(self._run, delivery=delivery))
            if record is None:
                return  # the engine is down or crashed: next tick
            self.records.append(record)
            self.files.append((delivery.file_id, delivery.data, delivery.damaged))
            self.pending.pop(0)
            if delivery.day is not None and record.error is None:
                # The report is in: the PSP's API catches up on that day's captures.
                day = self.days[delivery.day]
                self.heard_by_file.update(self.psp.hear(line.reference for line in day.clean))
            self.note("recon", delivery.file_id, record.run_id or "refused", len(record.items))

    async def _run(self, engine: Engine, *, delivery: Delivery) -> RunRecord:
        ctx = engine.ctx
        store: Any = ctx.store
        reconciler = Reconciler(store, ctx.clock, ctx.ids, tell=ctx.system.tell, contract=CONTRACT)
        try:
            settlement = parse(delivery.data)
        except ParseError as exc:
            return RunRecord(delivery.file_id, delivery.damaged, None, (), str(exc), frozenset())
        unheard: set[tuple[str, Reason]] = set()
        for line in settlement.lines:
            if line.kind is LineKind.CAPTURE:
                order = await store.get_order(line.reference)
                if order is not None and order.status is not OrderStatus.SUCCESS:
                    unheard.add((line.reference, Reason.CAPTURE_NOT_HEARD))
            elif line.kind is LineKind.REFUND:
                refund = await store.get_refund(line.reference)
                if refund is not None and refund.status is not RefundStatus.SUCCEEDED:
                    unheard.add((line.reference, Reason.REFUND_NOT_HEARD))
            elif line.kind in (LineKind.CHARGEBACK, LineKind.CHARGEBACK_REVERSAL):
                dispute = await store.get_dispute(line.reference)
                if dispute is None or (
                    line.kind is LineKind.CHARGEBACK_REVERSAL
                    and dispute.status is DisputeStatus.OPEN
                ):
                    unheard.add((line.reference, Reason.DISPUTE_NOT_HEARD))
            elif line.kind in (LineKind.PAYOUT, LineKind.PAYOUT_REVERSAL):
                payout = await store.get_payout(line.reference)
                returned = line.kind is LineKind.PAYOUT_REVERSAL
                if payout is not None and payout.status in UNHEARD_PAYOUT[returned]:
                    unheard.add((line.reference, Reason.PAYOUT_NOT_HEARD))
        outcome: Outcome = await reconciler.reconcile(delivery.data, window=delivery.window)
        items = tuple(
            (i.reference, i.klass, i.reason)
            for i in outcome.stored
            if i.klass is not ItemClass.MATCHED  # a payout line's kept match
        )
        return RunRecord(
            delivery.file_id, delivery.damaged, outcome.run.run_id, items, None, frozenset(unheard)
        )

    def report(self) -> dict[str, Any]:
        fired = Counter(i.fault.value for day in self.days for i in day.injected)
        classes = Counter(klass.value for r in self.records for _, klass, _ in r.items)
        return {
            "files": len(self.records),
            "rows": sum(len(day.clean) for day in self.days),
            "refused": sum(1 for r in self.records if r.error is not None),
            "corruptions": dict(sorted(fired.items())),
            "items": dict(sorted(classes.items())),
        }


def write_settlement_files(files: Iterable[tuple[str, bytes, bool]], directory: Path) -> list[Path]:
    """Each delivered file as `<file id>.csv` / `.xml` (a damaged copy as `.damaged`)."""
    written: list[Path] = []
    for file_id, data, was_damaged in files:
        suffix = ".xml" if file_id.startswith("bank-") else ".csv"
        path = directory / f"{file_id}{'.damaged' if was_damaged else ''}{suffix}"
        path.write_bytes(data)
        written.append(path)
    return written
