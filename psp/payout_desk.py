"""The fake PSP's payouts desk: Stripe-shaped payouts that go `pending` -> `paid` | `failed`
after a delay, and a paid one that may come back (`returned`) later, each change announced as
a signed webhook through the face's webhook pump (psp/pump.py).

Why a desk of its own (not simulator/payout_provider.py): that provider is the simulator's
in-process `PayoutGateway`, driven in virtual time by the simulator's plan; this one is the HTTP
face's books, in real seconds, rendered as Stripe's Payout object (psp/payouts.py serves it).
The PSP is also the payout provider, as Stripe (Connect payouts) and Adyen are.

Stripe's shape, and where it has none:
- a payout is `{"id": "po_...", "object": "payout", "amount", "currency", "destination",
  "status": pending|paid|failed, "failure_code", "failure_message", "metadata", "created",
  "arrival_date", "method": "standard", "automatic": false}`;
- events: `payout.paid` and `payout.failed` (Stripe's types). A bank return of a paid payout
  is, at Stripe, the same payout turning `failed` with a `payout.failed` event (failure_code
  `account_closed` here). Stripe's object does not say that the failure came after `paid`, so
  the fake adds one documented field, `returned: true` (false otherwise); payengine's receiver
  also reads a `payout.failed` of a payout its books have PAID as a return (web/payout_wire.py).
- one payout per idempotency key: the desk keeps payouts by key, so a create retried after the
  answer was lost (a timeout after accept: 503 after acting, the cached answer abandoned) finds
  the first payout and never pays twice. The same key with other parameters is Stripe's
  `idempotency_error`.

Fault knobs (`PayoutKnobs`, from a scenario's `payout_*` faults in psp/faults.py's way): the
delay before the outcome, the shares of failed and returned payouts, how long after `paid` a
return comes, and the share of creates whose answer is lost after the payout was accepted.
Tests script the next fates and call actions (`script_fate`, `script_call`).
"""

from __future__ import annotations

import enum
import itertools
import random
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
import trio

from engine.gateway import GatewayUnavailable
from engine.money import Money
from engine.ports import Clock

#: Payouts the desk keeps; a create beyond it is refused (429, the caller retries later).
PAYOUTS_KEPT_MAX = 100_000
#: Outcomes scheduled but not yet due; a create beyond it is refused (429).
OUTCOMES_PENDING_MAX = 10_000
#: Events waiting for the webhook pump; the desk waits beyond it (backpressure).
EVENTS_QUEUED_MAX = 10_000
#: Stripe's failure codes the desk uses: a payout refused by the bank, and a bank return.
FAILED_CODE = "no_account"
RETURNED_CODE = "account_closed"
_MESSAGES = {
    FAILED_CODE: "The bank account details on file are probably incorrect.",
    RETURNED_CODE: "The bank account has been closed: the bank returned the payout.",
}


class Fate(enum.StrEnum):
    PAID = "paid"
    FAILED = "failed"
    RETURNED = "returned"  # paid first, returned `returned_after_s` later


class CallAction(enum.StrEnum):
    OK = "ok"
    TIMEOUT_AFTER = "timeout_after"  # the payout is accepted, the answer lost (503)


@attrs.frozen
class PayoutKnobs:
    """The payouts desk's fault plan; delays in real seconds."""

    paid_after_s: float = 1.0
    failed_p: float = 0.0
    returned_p: float = 0.0
    returned_after_s: float = 2.0
    timeout_after_p: float = 0.0
    seed: int = 0

    def __attrs_post_init__(self) -> None:
        assert 0 <= self.failed_p + self.returned_p <= 1, self
        assert 0 <= self.timeout_after_p <= 1, self
        assert self.paid_after_s >= 0 and self.returned_after_s >= 0, self


@attrs.define
class DeskPayout:
    payout_id: str
    key: str
    amount: Money
    destination: str | None
    metadata: dict[str, str]
    created_s: int
    status: str = "pending"  # Stripe's: pending, paid, failed
    returned: bool = False
    failure_code: str | None = None

    def same_request(self, amount: Money, destination: str | None) -> bool:
        return self.amount == amount and self.destination == destination


@attrs.frozen
class PayoutEvent:
    """A `payout.*` event: the payout as it was when the event happened."""

    event_id: str
    type: str
    payout: dict[str, Any]
    occurred_at_ms: int


def payout_json(payout: DeskPayout) -> dict[str, Any]:
    return {
        "id": payout.payout_id,
        "object": "payout",
        "amount": payout.amount.minor,
        "currency": payout.amount.currency.lower(),
        "destination": payout.destination,
        "status": payout.status,
        "returned": payout.returned,
        "failure_code": payout.failure_code,
        "failure_message": None if payout.failure_code is None else _MESSAGES[payout.failure_code],
        "metadata": payout.metadata,
        "method": "standard",
        "automatic": False,
        "created": payout.created_s,
        "arrival_date": payout.created_s,
        "livemode": False,
    }


class PayoutDesk:
    def __init__(self, clock: Clock, namespace: str, knobs: PayoutKnobs | None = None) -> None:
        self.clock = clock
        self.namespace = namespace
        self.knobs = knobs or PayoutKnobs()
        self.rng = random.Random(self.knobs.seed)
        self.payouts: dict[str, DeskPayout] = {}  # by payout id, oldest first
        self.by_key: dict[str, str] = {}  # idempotency key -> payout id
        #: Creates per idempotency key (each request that reached the desk, replays excluded).
        self.creates: dict[str, int] = {}
        self.emitted: list[PayoutEvent] = []
        self._fates: deque[Fate] = deque()
        self._calls: deque[CallAction] = deque()
        self._seq = itertools.count(1)
        self.events_send, self.events_receive = trio.open_memory_channel[PayoutEvent](
            EVENTS_QUEUED_MAX
        )
        self._due_send, self._due_receive = trio.open_memory_channel[tuple[str, Fate]](
            OUTCOMES_PENDING_MAX
        )
        #: Called with each event before it is queued (tests, the demo's timeline).
        self.observer: Callable[[PayoutEvent], None] | None = None

    # --- scripting -----------------------------------------------------------------------------
    def script_fate(self, *fates: str) -> None:
        self._fates.extend(Fate(f) for f in fates)

    def script_call(self, *actions: str) -> None:
        self._calls.extend(CallAction(a) for a in actions)

    def _fate(self) -> Fate:
        if self._fates:
            return self._fates.popleft()
        r = self.rng.random()
        if r < self.knobs.failed_p:
            return Fate.FAILED
        if r < self.knobs.failed_p + self.knobs.returned_p:
            return Fate.RETURNED
        return Fate.PAID

    def _call(self) -> CallAction:
        if self._calls:
            return self._calls.popleft()
        if self.knobs.timeout_after_p and self.rng.random() < self.knobs.timeout_after_p:
            return CallAction.TIMEOUT_AFTER
        return CallAction.OK

    def _new_id(self, prefix: str) -> str:
        """`po_<namespace>_<seq>`: the underscore keeps the namespace's digits and the
        sequence's apart, so no id is a 13+ digit run that the API's card-number guard
        (web/cardguard.py) would take for a card in the webhook's body."""
        return f"{prefix}_{self.namespace}_{next(self._seq):08d}"

    # --- the API's verbs -----------------------------------------------------------------------
    def find(self, key: str) -> DeskPayout | None:
        payout_id = self.by_key.get(key)
        return None if payout_id is None else self.payouts[payout_id]

    async def create(
        self, key: str, amount: Money, destination: str | None, metadata: dict[str, str]
    ) -> DeskPayout:
        """The payout with this key (made now, or the one made before). Raises
        `GatewayUnavailable` after accepting when the plan loses the answer, and `ValueError`
        for a key first used with another amount or destination."""
        assert amount.minor > 0, amount
        action = self._call()
        self.creates[key] = self.creates.get(key, 0) + 1
        existing = self.find(key)
        if existing is not None:
            if not existing.same_request(amount, destination):
                raise ValueError(f"payout key {key} was first used with other parameters")
        else:
            if len(self.payouts) >= PAYOUTS_KEPT_MAX:
                raise OverflowError(f"the desk keeps at most {PAYOUTS_KEPT_MAX} payouts")
            existing = DeskPayout(
                self._new_id("po"),
                key,
                amount,
                destination,
                dict(metadata),
                self.clock.now_ms() // 1000,
            )
            try:
                self._due_send.send_nowait((existing.payout_id, self._fate()))
            except trio.WouldBlock:
                raise OverflowError("too many payouts pending") from None
            self.payouts[existing.payout_id] = existing
            self.by_key[key] = existing.payout_id
        await trio.lowlevel.checkpoint()
        if action is CallAction.TIMEOUT_AFTER:
            raise GatewayUnavailable("the payout was accepted but the answer was lost")
        return existing

    # --- outcomes, in real time ------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Settle each accepted payout when its outcome is due. Runs until cancelled."""
        async with trio.open_nursery() as nursery:
            task_status.started()
            async for payout_id, fate in self._due_receive:
                nursery.start_soon(self._settle, payout_id, fate)

    async def _settle(self, payout_id: str, fate: Fate) -> None:
        await trio.sleep(self.knobs.paid_after_s)
        payout = self.payouts[payout_id]
        assert payout.status == "pending", payout
        if fate is Fate.FAILED:
            payout.status, payout.failure_code = "failed", FAILED_CODE
            await self._emit("payout.failed", payout)
            return
        payout.status = "paid"
        await self._emit("payout.paid", payout)
        if fate is Fate.RETURNED:
            await trio.sleep(self.knobs.returned_after_s)
            payout.status, payout.failure_code, payout.returned = "failed", RETURNED_CODE, True
            await self._emit("payout.failed", payout)

    async def _emit(self, kind: str, payout: DeskPayout) -> None:
        event = PayoutEvent(self._new_id("evt"), kind, payout_json(payout), self.clock.now_ms())
        self.emitted.append(event)
        del self.emitted[:-EVENTS_QUEUED_MAX]
        if self.observer is not None:
            self.observer(event)
        await self.events_send.send(event)

    # --- what the desk's books show --------------------------------------------------------------
    def newest_first(self) -> list[DeskPayout]:
        return list(self.payouts.values())[::-1]

    def out_total(self) -> dict[str, int]:
        """Money that left and stayed out (paid, not returned), per currency, minor units."""
        totals: dict[str, int] = {}
        for payout in self.payouts.values():
            if payout.status == "paid":
                currency = payout.amount.currency
                totals[currency] = totals.get(currency, 0) + payout.amount.minor
        return totals
