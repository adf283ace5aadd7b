"""The chaos panel: faults injected now, by a button, into the running demo.

- duplicate the next webhook: the PSP's sender sends the next event twice (the engine records
  each event id once: the second copy changes nothing);
- drop the next webhook: the PSP never sends the next event (the engine learns the outcome by
  asking the PSP: the order's status poll, the checkout's expiry, or reconciliation);
- time out the next capture after the PSP captured: the PSP acts and the answer is lost (the
  order retries with the same idempotency key and the PSP answers from its idempotency store);
- crash and restart the engine: the API app and its engine stop (an in-flight unit of work is
  rolled back) and start again; recovery hands every unfinished payment to its actor;
- corrupt tonight's settlement file (or write it clean): the PSP writes its report now, with
  one discrepancy, and the reconciler runs it at once (teach/settlement.py).

Each fault is armed on the timeline when pressed and noted again when it fires. The PSP side
composes with a fault plan given by name (`payengine demo --faults NAME`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import attrs

from engine.gateway import PspNotification
from psp.faults import PspFaultPlan
from psp.pump import ONCE, Delivery
from simulator.fake_psp import Action, FakePsp
from teach.timeline import Timeline

#: How long after the first copy a duplicated webhook's second copy goes out.
DUPLICATE_GAP_S = 0.5

#: (name, button label, what the timeline should show) of each fault, in panel order.
FAULTS = (
    ("duplicate_webhook", "Duplicate the next webhook", "the second copy is recorded once"),
    (
        "drop_webhook",
        "Drop the next webhook",
        "nothing moves on a guess: the engine asks the PSP (at the checkout's expiry)",
    ),
    (
        "timeout_capture",
        "Time out the next capture (after the PSP captured)",
        "outcome unknown, then a retry with the same key",
    ),
    ("crash_engine", "Crash and restart the engine", "recovery resumes every unfinished payment"),
    (
        "corrupt_settlement",
        "Corrupt tonight's settlement file",
        "one discrepancy in the PSP's report: reconciliation finds it (teach/settlement.py)",
    ),
    (
        "reconcile_settlement",
        "Reconcile tonight's file (uncorrupted)",
        "the PSP's report matches the ledger line for line",
    ),
)
FAULT_NAMES = frozenset(name for name, _, _ in FAULTS)


@attrs.define(eq=False)
class Chaos:
    timeline: Timeline
    #: A scenario's PSP faults (`--faults NAME`), drawn for every call and webhook; or None.
    plan: PspFaultPlan | None = None
    #: Restarts the engine (the dispatcher's API mount); set by teach/server.py.
    restart_engine: Callable[[], Awaitable[None]] | None = None
    #: Writes tonight's settlement file (corrupted when told) and reconciles it; teach/server.py.
    settle: Callable[[bool], Awaitable[str]] | None = None
    armed: dict[str, int] = attrs.Factory(dict)
    fired: dict[str, int] = attrs.Factory(dict)

    async def press(self, name: str) -> str:
        """Arm (or, for a crash, do) the fault `name`; what happened, in a sentence."""
        assert name in FAULT_NAMES, name
        if name == "crash_engine":
            assert self.restart_engine is not None
            self.timeline.add("chaos", "chaos panel", "engine crashed", "stopping every actor")
            self._fired(name)
            await self.restart_engine()
            self.timeline.add(
                "engine", "engine", "engine restarted", "recovery resumes unfinished payments"
            )
            return "the engine crashed and restarted"
        if name in ("corrupt_settlement", "reconcile_settlement"):
            assert self.settle is not None
            self._fired(name)
            return await self.settle(name == "corrupt_settlement")
        self.armed[name] = self.armed.get(name, 0) + 1
        label = next(label for n, label, _ in FAULTS if n == name)
        self.timeline.add("chaos", "chaos panel", f"armed: {label.lower()}")
        return f"armed: {label.lower()}"

    def _take(self, name: str) -> bool:
        if self.armed.get(name, 0) <= 0:
            return False
        self.armed[name] -= 1
        self._fired(name)
        return True

    def _fired(self, name: str) -> None:
        self.fired[name] = self.fired.get(name, 0) + 1

    # --- the PSP's hooks (psp/app.py PspFaceSettings.configure and .webhook_plan) --------------
    def configure(self, psp: FakePsp) -> None:
        if self.plan is not None:
            self.plan.apply(psp)
        base = psp.chooser

        def choose(operation: str) -> Action:
            if operation == "capture" and self._take("timeout_capture"):
                self.timeline.add(
                    "chaos", "PSP", "capture done, answer lost (chaos)", "the caller sees a timeout"
                )
                return Action.TIMEOUT_AFTER
            return Action.OK if base is None else base(operation)

        psp.chooser = choose

    def webhook_plan(self, event: PspNotification) -> Sequence[Delivery]:
        what = f"{event.kind.value} {event.reference}"
        payment_id = event.reference if event.reference.startswith("pay") else None
        if self._take("drop_webhook"):
            self.timeline.add("chaos", "PSP", "webhook dropped (chaos)", what, payment_id)
            return ()
        if self._take("duplicate_webhook"):
            self.timeline.add("chaos", "PSP", "webhook sent twice (chaos)", what, payment_id)
            return (Delivery(), Delivery(DUPLICATE_GAP_S))
        deliveries = ONCE if self.plan is None else self.plan.deliveries(event)
        if not deliveries:
            self.timeline.add("webhook", "PSP", "webhook lost (fault plan)", what, payment_id)
        else:
            copies = f" x{len(deliveries)}" if len(deliveries) > 1 else ""
            self.timeline.add("webhook", "PSP", f"webhook sent{copies}", what, payment_id)
        return deliveries
