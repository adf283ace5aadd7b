"""A stateful in-process fake PSP behind the `Gateway` port.

It behaves like a careful real PSP: sessions are idempotent on the nonce, captures and refunds
on the idempotency key (a repeated key returns the first result and never captures or refunds
twice; a refund key reused with another capture or amount raises `IdempotencyKeyReused`, a real
PSP's 400), and every outcome is also announced by a webhook. It records what a real PSP's books
would show (`captures`, `capture_calls`, `refunds`), which is what the oracle and the settlement
reports (simulator/psp_reports.py) are built from.

Refunds (Stripe-like, in parts, refused with a `RefundRefusal`, maybe PENDING until
`refund_succeeds` / `refund_fails`) are booked by the PSP's `RefundBook`
(simulator/psp_refunds.py); `refund` and `query_refund` here apply the call's fault first.

Faults are scripted per operation (`script("capture", "unavailable", "timeout_after")`): each
call takes the next action from its script, `ok` when the script is empty. The simulator's
fault plan drives the same hooks from its seeded rng (`chooser`, `latency`).

Webhooks are signed Stripe-style (simulator/signing.py) with `webhook_secret`; `wire_event` and
`parse_event` are the JSON body both sides agree on.
"""

from __future__ import annotations

import enum
import secrets
from collections import Counter, deque
from collections.abc import Callable, Iterable

import attrs
import trio

from engine.gateway import (
    CaptureResult,
    CaptureStatus,
    DisputeResult,
    GatewayUnavailable,
    IdempotencyKeyReused,
    PspEventKind,
    PspNotification,
    PspRefundStatus,
    RefundResult,
    Registration,
    SessionStatus,
)
from engine.money import Money
from engine.ports import Clock
from simulator.call_faults import before_answer
from simulator.psp_disputes import DisputeBook, PspDispute
from simulator.psp_refunds import Refund, RefundBook
from simulator.psp_wire_events import wire_event
from simulator.signing import sign_webhook

#: The most webhooks waiting to be sent before the PSP applies backpressure.
WEBHOOK_QUEUE_MAX = 100_000


def process_namespace(epoch_ms: int) -> str:
    """An id namespace for a fake PSP that lives in one process among many over the same
    database (the demo, `serve`): the start time plus random bits, so no two collide."""
    return f"{epoch_ms:x}{secrets.token_hex(3)}"


class Action(enum.StrEnum):
    OK = "ok"
    UNAVAILABLE = "unavailable"  # fails before acting (5xx, connection refused)
    TIMEOUT_AFTER = "timeout_after"  # acts, then the answer is lost
    DECLINE = "decline"  # a capture the issuer refuses; a refund that fails at once
    HANG = "hang"  # never answers (the caller's timeout fires); does not act
    #: A capture attempt fails at the PSP (503) and the PSP also announces `capture.failed`
    #: for it, yet keeps no result for the key, so a retry with the same key may succeed. A
    #: late notice of this kind is what makes trusting webhook order dangerous.
    #: Captures only: on a refund it fails as `unavailable` does.
    FAILED_ATTEMPT = "failed_attempt"
    #: Refunds only: the refund is accepted as pending; `refund_succeeds` / `refund_fails`
    #: settle it later (on a capture it is `ok`).
    PENDING = "pending"


@attrs.define
class Session:
    session_id: str
    nonce: str
    amount: Money
    status: SessionStatus
    return_url: str | None
    captured_minor: int = 0


@attrs.define
class Capture:
    capture_id: str
    key: str
    session_id: str
    amount: Money
    status: CaptureStatus
    #: Wall time (ms) the PSP took the capture: the booking date on its settlement file.
    captured_at_ms: int = 0
    #: Refunded or held by a pending refund: what can no longer be refunded.
    refunded_minor: int = 0
    #: What a dispute took back (simulator/psp_disputes.py); a disputed capture is not refunded.
    disputed_minor: int = 0


class FakePsp:
    def __init__(
        self, clock: Clock, *, webhook_queue_max: int = WEBHOOK_QUEUE_MAX, id_namespace: str = ""
    ) -> None:
        """`id_namespace` keeps the ids of this PSP apart from an earlier one's: a real PSP
        never reuses an event or session id, and the engine deduplicates on them, so a fake PSP
        that outlives one process (the demo, `serve`) needs one; the simulator leaves it empty
        (its ids must be deterministic)."""
        assert id_namespace == "" or id_namespace.isalnum(), id_namespace
        self.clock = clock
        self._id_namespace = f"{id_namespace}_" if id_namespace else ""
        self.sessions: dict[str, Session] = {}
        self.by_nonce: dict[str, str] = {}
        self.captures: dict[str, Capture] = {}
        self.capture_calls: Counter[str] = Counter()
        #: Registration calls by nonce (the payment id), answered or not.
        self.register_calls: Counter[str] = Counter()
        self.captures_by_id: dict[str, Capture] = {}
        self.refund_book = RefundBook(clock, self.captures_by_id, self._new_id, self._emit)
        #: Every refund request by idempotency key (the book's own dict).
        self.refunds: dict[str, Refund] = self.refund_book.refunds
        self.refund_calls: Counter[str] = Counter()
        #: Disputes (chargebacks) by their id (simulator/psp_disputes.py).
        self.dispute_book = DisputeBook(clock, self.captures_by_id, self._new_id, self._announce)
        self.disputes: dict[str, PspDispute] = self.dispute_book.disputes
        self.calls: Counter[str] = Counter()
        self.emitted: list[PspNotification] = []
        self._scripts: dict[str, deque[Action]] = {}
        self._seq = 0
        self.webhook_send, self.webhook_receive = trio.open_memory_channel[PspNotification](
            webhook_queue_max
        )
        #: Called instead of the built-in script to choose an action (the simulator's plan).
        self.chooser: Callable[[str], Action] | None = None
        #: Seconds each call takes before the PSP acts (the simulator's latency distribution).
        self.latency: Callable[[str], float] | None = None
        self.hang_s = 3600.0
        self.webhook_secret = b"whsec_simulated"
        #: Decides, for a new capture, that the PSP withholds every word of it (the answer and
        #: the webhook are lost, retries and status queries fail) until `hear` (reconciliation's
        #: lost-webhook fault: only the nightly report tells).
        self.withhold: Callable[[str], bool] | None = None
        self.unheard: set[str] = set()

    def hear(self, keys: Iterable[str] | None = None) -> list[str]:
        """The PSP answers again for `keys` (default: every withheld capture); returns those
        that were withheld. The lost webhooks stay lost."""
        chosen = sorted(self.unheard if keys is None else self.unheard.intersection(keys))
        self.unheard.difference_update(chosen)
        return chosen

    # --- scripting ---------------------------------------------------------------------------
    def script(self, operation: str, *actions: str) -> None:
        self._scripts.setdefault(operation, deque()).extend(Action(a) for a in actions)

    def _next_action(self, operation: str) -> Action:
        self.calls[operation] += 1
        script = self._scripts.get(operation)
        if script:
            return script.popleft()
        if self.chooser is not None:
            return self.chooser(operation)
        return Action.OK

    async def _before(self, action: Action, operation: str = "") -> None:
        await before_answer(
            self.latency,
            operation,
            unavailable=action is Action.UNAVAILABLE,
            hang=action is Action.HANG,
            hang_s=self.hang_s,
            who="PSP",
        )

    def _new_id(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}_{self._id_namespace}{self._seq:010d}"

    def _emit(
        self,
        kind: PspEventKind,
        reference: str,
        capture_id: str | None = None,
        reason: str | None = None,
        refund_id: str | None = None,
    ) -> PspNotification:
        event = PspNotification(
            event_id=self._new_id("evt"),
            kind=kind,
            reference=reference,
            occurred_at_ms=self.clock.now_ms(),
            capture_id=capture_id,
            reason=reason,
            refund_id=refund_id,
            raw={"type": kind.value, "reference": reference},
        )
        self.emitted.append(event)
        self.webhook_send.send_nowait(event)
        return event

    def _announce(self, event: PspNotification) -> None:
        """Send an event built elsewhere (a dispute's, simulator/psp_disputes.py)."""
        self.emitted.append(event)
        self.webhook_send.send_nowait(event)

    # --- the Gateway port --------------------------------------------------------------------
    async def register_checkout(
        self, nonce: str, amount: Money, return_url: str | None
    ) -> Registration:
        action = self._next_action("register")
        self.register_calls[nonce] += 1
        await self._before(action, "register")
        session_id = self.by_nonce.get(nonce)
        if session_id is None:
            session_id = self._new_id("cs")
            self.sessions[session_id] = Session(
                session_id, nonce, amount, SessionStatus.OPEN, return_url
            )
            self.by_nonce[nonce] = session_id
        await trio.lowlevel.checkpoint()
        if action is Action.TIMEOUT_AFTER:
            raise GatewayUnavailable("PSP registered the session but the answer was lost")
        return Registration(session_id, f"https://psp.invalid/pay/{session_id}")

    async def session_status(self, session_id: str) -> SessionStatus:
        await self._before(self._next_action("session_status"), "session_status")
        return self.sessions[session_id].status

    async def expire_session(self, session_id: str) -> SessionStatus:
        action = self._next_action("expire")
        await self._before(action, "expire")
        session = self.sessions[session_id]
        if session.status is SessionStatus.OPEN:
            session.status = SessionStatus.EXPIRED
            self._emit(PspEventKind.SESSION_EXPIRED, session.nonce)
        if action is Action.TIMEOUT_AFTER:
            raise GatewayUnavailable("answer lost")
        return session.status

    async def capture(self, idempotency_key: str, session_id: str, amount: Money) -> CaptureResult:
        action = self._next_action("capture")
        self.capture_calls[idempotency_key] += 1
        await self._before(action, "capture")
        if idempotency_key in self.unheard:
            raise GatewayUnavailable("PSP does not answer for this capture (withheld)")
        if action is Action.FAILED_ATTEMPT and idempotency_key not in self.captures:
            self._emit(PspEventKind.CAPTURE_FAILED, idempotency_key, reason="attempt_failed")
            await trio.lowlevel.checkpoint()
            raise GatewayUnavailable("PSP failed the capture attempt (503)")
        existing = self.captures.get(idempotency_key)
        if existing is None:
            session = self.sessions.get(session_id)
            not_authorized = session is None or session.status is not SessionStatus.AUTHORIZED
            if not_authorized or action is Action.DECLINE:
                status = CaptureStatus.DECLINED
            elif session is None or session.captured_minor + amount.minor > session.amount.minor:
                status = CaptureStatus.DECLINED  # more than was authorized
            else:
                status = CaptureStatus.CAPTURED
                session.captured_minor += amount.minor
            existing = Capture(
                self._new_id("cap"),
                idempotency_key,
                session_id,
                amount,
                status,
                self.clock.now_ms(),
            )
            self.captures[idempotency_key] = existing
            self.captures_by_id[existing.capture_id] = existing
            if (
                status is CaptureStatus.CAPTURED
                and self.withhold is not None
                and self.withhold(idempotency_key)
            ):
                self.unheard.add(idempotency_key)
                await trio.lowlevel.checkpoint()
                raise GatewayUnavailable("PSP captured; its answer and webhook are lost")
            self._emit(
                PspEventKind.CAPTURE_SUCCEEDED
                if status is CaptureStatus.CAPTURED
                else PspEventKind.CAPTURE_FAILED,
                idempotency_key,
                capture_id=existing.capture_id,
                reason=None if status is CaptureStatus.CAPTURED else "declined",
            )
        await trio.lowlevel.checkpoint()
        if action is Action.TIMEOUT_AFTER:
            raise GatewayUnavailable("PSP captured but the answer was lost")
        return CaptureResult(existing.status, existing.capture_id, None)

    async def query_capture(self, idempotency_key: str) -> CaptureResult:
        await self._before(self._next_action("query"), "query")
        if idempotency_key in self.unheard:
            raise GatewayUnavailable("PSP does not answer for this capture (withheld)")
        existing = self.captures.get(idempotency_key)
        if existing is None:
            return CaptureResult(CaptureStatus.NOT_FOUND)
        return CaptureResult(existing.status, existing.capture_id)

    async def refund(self, idempotency_key: str, capture_id: str, amount: Money) -> RefundResult:
        action = self._next_action("refund")
        self.refund_calls[idempotency_key] += 1
        if action is Action.FAILED_ATTEMPT:
            action = Action.UNAVAILABLE
        await self._before(action, "refund")
        existing = self.refunds.get(idempotency_key)
        if existing is None:
            existing = self.refund_book.book(
                idempotency_key,
                capture_id,
                amount,
                declined=action is Action.DECLINE,
                pending=action is Action.PENDING,
            )
        elif existing.capture_id != capture_id or existing.amount != amount:
            await trio.lowlevel.checkpoint()
            raise IdempotencyKeyReused(
                f"refund key {idempotency_key} was used for {existing.amount} of "
                f"{existing.capture_id}, not {amount} of {capture_id}"
            )
        await trio.lowlevel.checkpoint()
        if action is Action.TIMEOUT_AFTER:
            raise GatewayUnavailable("PSP took the refund but the answer was lost")
        return existing.result()

    async def query_refund(self, idempotency_key: str) -> RefundResult:
        action = self._next_action("query_refund")
        if action is Action.FAILED_ATTEMPT:
            action = Action.UNAVAILABLE
        await self._before(action, "query_refund")
        existing = self.refunds.get(idempotency_key)
        await trio.lowlevel.checkpoint()
        if action is Action.TIMEOUT_AFTER:
            raise GatewayUnavailable("PSP answered the refund query but the answer was lost")
        if existing is None:
            return RefundResult(PspRefundStatus.NOT_FOUND)
        return existing.result()

    async def query_dispute(self, dispute_id: str) -> DisputeResult:
        action = self._next_action("query_dispute")
        if action in (Action.FAILED_ATTEMPT, Action.DECLINE, Action.PENDING):
            action = Action.UNAVAILABLE
        await self._before(action, "query_dispute")
        await trio.lowlevel.checkpoint()
        if action is Action.TIMEOUT_AFTER:
            raise GatewayUnavailable("PSP answered the dispute query but the answer was lost")
        return self.dispute_book.query(dispute_id)

    # --- pending refunds settle later (the PSP's bank or the card network answers) ------------
    def refund_succeeds(self, idempotency_key: str) -> PspNotification | None:
        """A pending refund succeeds; None if it is not pending (already settled or unknown)."""
        return self.refund_book.succeeds(idempotency_key)

    def refund_fails(
        self, idempotency_key: str, reason: str = "refund_failed"
    ) -> PspNotification | None:
        """A pending refund fails (the card was closed...): its amount is refundable again."""
        return self.refund_book.fails(idempotency_key, reason)

    def pending_refunds(self) -> list[str]:
        """The keys of the refunds still pending, in the order they were asked."""
        return self.refund_book.pending()

    # --- the buyer on the hosted page ----------------------------------------------------------
    def buyer_pays(self, session_id: str) -> PspNotification | None:
        return self._buyer(session_id, SessionStatus.AUTHORIZED, PspEventKind.SESSION_AUTHORIZED)

    def buyer_declined(self, session_id: str) -> PspNotification | None:
        return self._buyer(session_id, SessionStatus.DECLINED, PspEventKind.SESSION_DECLINED)

    def buyer_in_review(self, session_id: str) -> PspNotification | None:
        return self._buyer(session_id, SessionStatus.REVIEW, PspEventKind.SESSION_REVIEW)

    def review_approves(self, session_id: str) -> PspNotification | None:
        session = self.sessions[session_id]
        if session.status is not SessionStatus.REVIEW:
            return None
        session.status = SessionStatus.AUTHORIZED
        return self._emit(PspEventKind.SESSION_AUTHORIZED, session.nonce)

    def review_declines(self, session_id: str) -> PspNotification | None:
        session = self.sessions[session_id]
        if session.status is not SessionStatus.REVIEW:
            return None
        session.status = SessionStatus.DECLINED
        return self._emit(PspEventKind.SESSION_DECLINED, session.nonce, reason="review_declined")

    def _buyer(
        self, session_id: str, status: SessionStatus, kind: PspEventKind
    ) -> PspNotification | None:
        session = self.sessions[session_id]
        if session.status is not SessionStatus.OPEN:
            return None  # the page is closed (paid, declined or expired)
        session.status = status
        return self._emit(kind, session.nonce)

    # --- webhooks on the wire -------------------------------------------------------------------
    def signed(self, event: PspNotification, now_s: int) -> tuple[bytes, str]:
        """The webhook body and its `Stripe-Signature` header value."""
        body = wire_event(event)
        return body, sign_webhook(self.webhook_secret, now_s, body)

    # --- what the PSP's books show ---------------------------------------------------------------
    def captured_total(self) -> Counter[str]:
        totals: Counter[str] = Counter()
        for capture in self.captures.values():
            if capture.status is CaptureStatus.CAPTURED:
                totals[capture.amount.currency] += capture.amount.minor
        return totals

    def refunded_total(self) -> Counter[str]:
        """Succeeded refunds per currency (pending ones are held, not yet paid out)."""
        return self.refund_book.total()
