"""A shipped scenario's PSP faults, applied to the fake PSP that `payengine psp serve` runs.

Why: engineers point their own Stripe integration at the fake PSP to see it survive what a real
PSP does (5xx, answers lost after the PSP acted, hangs, declines, slow calls). The plan is a
scenario's `[faults]` table (scenarios/*.toml, `--faults psp_timeouts`), drawn per call from a
seeded rng, so a run with the same seed and the same calls misbehaves the same way. The same
probabilities the simulator uses (simulator/world.py), on the FakePsp's `chooser` and `latency`
hooks; and the webhook faults (loss, duplicates, delay, reordering, forged copies) as the
webhook sender's `plan` (psp/pump.py). Delays are in real seconds here.
"""

from __future__ import annotations

import math
import random

import attrs
import trio

from engine.gateway import CaptureStatus, PspNotification
from psp.payout_desk import PayoutEvent, PayoutKnobs
from psp.pump import Delivery
from scenarios import Faults
from simulator.fake_psp import Action, FakePsp

#: How long a hung call hangs before the PSP gives up (callers' own deadlines fire first).
HANG_S = 120.0
#: How late a reordered webhook goes out, at most: enough to land after the next event.
REORDER_S_MAX = 2.0
#: How far apart the duplicates of one event go out, at most.
DUPLICATE_SPREAD_S_MAX = 1.0
#: How often (seconds) the card networks look for new captures to dispute.
CARD_NETWORKS_POLL_S = 1.0


@attrs.define(eq=False)
class PspFaultPlan:
    faults: Faults
    rng: random.Random
    #: Faults fired, by `psp_<action>` name.
    fired: dict[str, int] = attrs.Factory(dict)
    #: The plan's seed; the payouts desk draws from its own rng seeded from it, so adding
    #: payouts changes none of the other draws.
    seed: int = 0

    @classmethod
    def of(cls, faults: Faults, seed: int) -> PspFaultPlan:
        return cls(faults, random.Random(seed), seed=seed)

    def apply(self, psp: FakePsp) -> None:
        psp.chooser = self.choose
        psp.latency = self.latency
        psp.hang_s = HANG_S

    def choose(self, operation: str) -> Action:
        f = self.faults
        table = [
            (f.psp_unavailable_p, Action.UNAVAILABLE),
            (f.psp_hang_p, Action.HANG),
            (f.psp_timeout_after_p, Action.TIMEOUT_AFTER),
        ]
        if operation == "capture":
            table += [
                (f.psp_decline_p, Action.DECLINE),
                (f.psp_failed_attempt_p, Action.FAILED_ATTEMPT),
            ]
        r = self.rng.random()
        for p, action in table:
            if r < p:
                self._fired(f"psp_{action.value}")
                return action
            r -= p
        return Action.OK

    def latency(self, operation: str) -> float:
        f = self.faults
        if f.psp_latency_ms_median <= 0:
            return 0.0
        # Log-normal around the median with a long tail, capped, as the simulator draws it.
        ms = f.psp_latency_ms_median * math.exp(self.rng.gauss(0.0, 0.8))
        return min(ms, f.psp_latency_ms_max) / 1000.0

    def deliveries(self, event: PspNotification) -> list[Delivery]:
        """The copies of `event` to send (none when it is lost), drawn as the simulator does."""
        return self._copies()

    def payout_deliveries(self, event: PayoutEvent) -> list[Delivery]:
        """The same draw for a payouts desk's event (psp/payout_desk.py)."""
        return self._copies()

    def _copies(self) -> list[Delivery]:
        f, rng = self.faults, self.rng
        if rng.random() < f.webhook_loss_p:
            self._fired("webhook_lost")
            return []
        copies = 1
        if rng.random() < f.webhook_duplicate_p:
            copies += rng.randint(1, f.webhook_duplicates_max)
            self._fired("webhook_duplicated")
        delay_s = 0.0
        if rng.random() < f.webhook_delay_p:
            delay_s = rng.uniform(0.0, f.webhook_delay_s_max)
            self._fired("webhook_delayed")
        elif rng.random() < f.webhook_reorder_p:
            delay_s = rng.uniform(0.0, REORDER_S_MAX)
            self._fired("webhook_reordered")
        found = [
            Delivery(delay_s + rng.uniform(0.0, DUPLICATE_SPREAD_S_MAX) * copy)
            for copy in range(copies)
        ]
        if rng.random() < f.webhook_forged_p:
            self._fired("webhook_forged")
            found.append(Delivery(rng.uniform(0.0, REORDER_S_MAX), forged=True))
        return found

    def payout_knobs(self) -> PayoutKnobs:
        """The payouts desk's shares from the scenario's `payout_*` faults (psp/payout_desk.py):
        payouts that fail, that are returned after paid, and creates whose answer is lost after
        the payout was accepted (`payout_timeout_after_p`); the delays stay the desk's (real
        seconds, not the scenario's virtual hours)."""
        f = self.faults
        return PayoutKnobs(
            failed_p=f.payout_failed_p,
            returned_p=f.payout_returned_p,
            timeout_after_p=f.payout_timeout_after_p,
            seed=self.seed + 1,
        )

    def _fired(self, name: str) -> None:
        self.fired[name] = self.fired.get(name, 0) + 1

    # --- disputes (chargebacks): the card networks behind the PSP ------------------------------
    async def disputes(
        self, psp: FakePsp, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """With the plan's `dispute_p`, dispute each new capture within `dispute_open_s_max`
        and decide it within `dispute_close_s_max` (won with `dispute_win_p`), as the
        simulator's card networks do (simulator/world_disputes.py); the PSP announces each step
        by `charge.dispute.*` webhooks. Delays are in real seconds. Runs until cancelled."""
        f = self.faults
        seen: set[str] = set()
        async with trio.open_nursery() as nursery:
            task_status.started()
            while f.dispute_p > 0:
                await trio.sleep(CARD_NETWORKS_POLL_S)
                for capture in list(psp.captures.values()):
                    if capture.capture_id in seen or capture.status is not CaptureStatus.CAPTURED:
                        continue
                    seen.add(capture.capture_id)
                    if self.rng.random() < f.dispute_p:
                        open_s = self.rng.uniform(0.0, f.dispute_open_s_max)
                        close_s = self.rng.uniform(0.0, f.dispute_close_s_max)
                        won = self.rng.random() < f.dispute_win_p
                        nursery.start_soon(
                            self._dispute, psp, capture.capture_id, open_s, close_s, won
                        )
            await trio.sleep_forever()

    async def _dispute(
        self, psp: FakePsp, capture_id: str, open_s: float, close_s: float, won: bool
    ) -> None:
        await trio.sleep(open_s)
        dispute = psp.dispute_book.open(capture_id)
        if dispute is None:  # refunded in full meanwhile
            return
        self._fired("dispute_opened")
        await trio.sleep(close_s)
        if psp.dispute_book.close(dispute.dispute_id, won=won):
            self._fired("dispute_won" if won else "dispute_lost")
