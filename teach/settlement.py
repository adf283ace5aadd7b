"""Tonight's settlement file, on demand: the chaos panel's "reconcile" and "corrupt" buttons.

The demo's fake PSP writes its settlement report from its own books, Stripe-shaped, as the
simulator's PSP does every night (simulator/psp_reports.py); "corrupt" first injects one
discrepancy into it with the simulator's content faults (simulator/recon_faults.py), in turn an
altered amount, a dropped row and an altered fee. The file then goes through the engine's
reconciler at once, as `POST /v1/reconciliations` runs it (actors/reconciler.py, with the
PSP's fee contract and the window of every capture the ledger holds), and the timeline shows
the run and each item it found (class, reason, why); the Money page lists the items.

A file holds what the PSP has booked since its last file (a dropped row is sent again next
time, as a real PSP's late line would be).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, cast

import attrs

from actors.reconciler import Reconciler, Window
from engine.money import Money
from engine.reconciliation import Format, ParseError
from engine.store.port import ReconciledStore
from simulator.fake_psp import FakePsp
from simulator.psp_reports import CONTRACT, day_tag, psp_lines, write_report
from simulator.recon_faults import ReconFault, ReconPlan, corrupt_lines
from teach.timeline import Timeline

#: The discrepancies "corrupt tonight's settlement file" injects, one per press, in turn.
CORRUPTIONS = (ReconFault.AMOUNT_ALTERED, ReconFault.ROW_DROPPED, ReconFault.FEE_ALTERED)
#: Seed of the corruptions' rng (the demo's faults are reproducible from a fresh start).
CORRUPTION_SEED = 16
#: A window end far past any booking: the PSP's books are read whole (minus what it sent).
BOOKS_END_MS = 2**62


def _money(money: Money | None) -> str:
    return "nothing" if money is None else f"{money.to_wire()} {money.currency}"


def _payment(reference: str) -> str | None:
    return reference if reference.startswith("pay") else None


@attrs.define(eq=False)
class Settlements:
    timeline: Timeline
    #: The running PSP and the API's runtime (None while the engine restarts).
    psp: Callable[[], FakePsp | None]
    runtime: Callable[[], Any]
    #: The (reference, PSP id) of each line an earlier file carried.
    sent: set[tuple[str, str]] = attrs.Factory(set)
    files: int = 0
    corrupted: int = 0
    rng: random.Random = attrs.Factory(lambda: random.Random(CORRUPTION_SEED))

    async def tonight(self, corrupt: bool) -> str:
        """Write tonight's file (with one discrepancy when `corrupt`) and reconcile it now."""
        psp, runtime = self.psp(), self.runtime()
        if psp is None or runtime is None:
            return "the engine is restarting: try again in a moment"
        now_ms = runtime.clock.now_ms()
        tag = f"{day_tag(now_ms)}n{self.files + 1}"
        books = psp_lines(psp, 0, BOOKS_END_MS, tag, Format.STRIPE)
        lines = [ln for ln in books if (ln.reference, ln.psp_reference or "") not in self.sent]
        if not lines:
            said = "the PSP booked nothing since its last file: buy something first"
            self.timeline.add("chaos", "PSP", "no settlement file tonight", said)
            return said
        what = "clean"
        if corrupt:
            fault = CORRUPTIONS[self.corrupted % len(CORRUPTIONS)]
            plan = ReconPlan(**{f"{fault.value}_p": 1.0})
            victim = lines[-1]
            altered, injected = corrupt_lines(
                [victim], self.rng, plan, tag=tag, source=Format.STRIPE, booked_at_ms=now_ms
            )
            assert [i.fault for i in injected] == [fault], injected
            lines = lines[:-1] + altered
            self.corrupted += 1
            what = f"corrupted: {fault.value.replace('_', ' ')} on {victim.reference}"
        self.files += 1
        self.sent.update((ln.reference, ln.psp_reference or "") for ln in lines)
        data = write_report(lines, Format.STRIPE)
        self.timeline.add(
            "chaos", "PSP", f"settlement file written ({what})", f"{len(lines)} lines, Stripe"
        )
        return await self._reconcile(runtime, data, now_ms)

    async def _reconcile(self, runtime: Any, data: bytes, now_ms: int) -> str:
        reconciler = Reconciler(
            cast(ReconciledStore, runtime.store),
            runtime.clock,
            runtime.ids,
            tell=runtime.engine.system.tell,
            contract=CONTRACT,
        )
        try:
            outcome = await reconciler.reconcile(data, Format.STRIPE, window=Window(0, now_ms + 1))
        except ParseError as exc:
            self.timeline.add("recon", "reconciler", "file refused", str(exc))
            return f"the reconciler refused the file: {exc}"
        run = outcome.run
        for item in outcome.stored:
            said = [item.reference]
            if item.expected is not None or item.found is not None:
                said.append(f"expected {_money(item.expected)}, found {_money(item.found)}")
            said += [item.detail] if item.detail else []
            self.timeline.add(
                "recon",
                "reconciler",
                f"{item.klass.value}: {item.reason.value}",
                "; ".join(said),
                _payment(item.reference),
            )
        counts = ", ".join(f"{n} {k}" for k, n in sorted(run.counts.items()) if n)
        self.timeline.add(
            "recon", "reconciler", f"reconciled {run.run_id}", f"{run.lines} lines: {counts}"
        )
        if not outcome.stored:
            return f"reconciled {run.lines} lines: every one matched"
        found = "; ".join(f"{i.klass.value} {i.reason.value}" for i in outcome.stored)
        return f"reconciled {run.lines} lines, found: {found}"
