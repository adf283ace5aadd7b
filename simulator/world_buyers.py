"""The simulated world's traffic: buyers arriving, their clients' requests, the hosted page.

Why apart from the world: this is everything a buyer and the merchant's client do, and the
oracle's idempotency check on what the client is answered. Checkouts arrive as a Poisson process
(with an optional burst) for the scenario's `duration_s`; each buyer draws from its own stream
`"<seed>:chk:<i>"`, so one buyer's choices never shift another's. A buyer's client may
double-click (the same checkout twice at once) or be impatient (give up on a first request,
then send the same again); a client whose connection broke retries with the same checkout id,
`CLIENT_ATTEMPTS_MAX` times. Every answer to one checkout id must name the same payment: the
first one is kept in `replies` and a different one is an `idempotent_replies` violation.

Then the buyer waits for the PSP's hosted page and pays, is declined, goes to review, or
abandons, as the scenario's traffic mix says. `active` counts buyers not done yet: the world
is not quiet while one is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import trio

from actors.service import CreateCheckout, PaymentView, Rejection
from engine.states import PaymentStatus, is_terminal
from simulator.determinism import stream
from simulator.oracle import Violation
from simulator.traffic import checkout_command, rate_at

if TYPE_CHECKING:
    from simulator.world import SimWorld

#: A client retries a checkout request whose connection broke this many times.
CLIENT_ATTEMPTS_MAX = 30
CLIENT_RETRY_S_MAX = 60.0
#: How long a buyer waits for the hosted page before giving up (virtual seconds).
SESSION_WAIT_S_MAX = 6 * 3600.0
#: The client's short wait for an impatient first request (seconds).
IMPATIENT_WAIT_S = 0.2


class Buyers:
    def __init__(self, world: SimWorld) -> None:
        self.world = world
        #: Buyers started and not done.
        self.active = 0
        #: checkout id -> the payment id of the first answer.
        self.replies: dict[str, str] = {}
        #: Checkout ids whose payment an answer said it created (at most one answer may).
        self.created: set[str] = set()

    async def arrive(self, clients: trio.Nursery) -> None:
        """Start buyers in `clients` until the traffic phase ends (or a violation stops it)."""
        world = self.world
        rng = stream(world.seed, "traffic")
        start = trio.current_time()
        index = 0
        while True:
            elapsed = trio.current_time() - start
            gap_s = rng.expovariate(rate_at(world.scenario.traffic, elapsed))
            tr = world.scenario.traffic
            if elapsed < tr.burst_start_s <= elapsed + gap_s:
                gap_s = tr.burst_start_s - elapsed  # the burst begins on time
            if elapsed + gap_s >= world.scenario.duration_s:
                await trio.sleep(max(0.0, world.scenario.duration_s - elapsed))
                return
            await trio.sleep(gap_s)
            if world.violation is not None:
                return
            self.active += 1
            clients.start_soon(self._buyer, index)
            index += 1

    async def _buyer(self, index: int) -> None:
        try:
            await self._buy(index)
        finally:
            self.active -= 1

    async def _buy(self, index: int) -> None:
        world = self.world
        stats = world.stats
        psp = world.psp
        rng = stream(world.seed, f"chk:{index}")
        tr = world.scenario.traffic
        command = checkout_command(world.scenario.traffic, world.seed, index, rng)
        stats.checkouts += 1
        double_click = rng.random() < tr.double_click_p
        impatient = rng.random() < tr.impatient_retry_p
        replies: list[PaymentView | Rejection | None] = []

        async def send(wait_s: float | None) -> None:
            replies.append(await self._checkout(command, wait_s))

        if double_click:  # the same checkout sent twice at once
            stats.buyer_outcomes["double_click"] += 1
            async with trio.open_nursery() as both:
                both.start_soon(send, None)
                both.start_soon(send, None)
        else:
            if impatient:  # a first request the client gives up on, then the same again
                stats.buyer_outcomes["impatient_retry"] += 1
                await self._checkout(command, IMPATIENT_WAIT_S, 1)
                await trio.sleep(rng.uniform(0.5, 5.0))
            await send(None)
        reply = next((r for r in replies if r is not None), None)
        if reply is None or isinstance(reply, Rejection):
            return
        payment = reply.payment
        if tr.checkout_id_reuse_p > 0 and rng.random() < tr.checkout_id_reuse_p:
            await self._reuse_checkout_id(command)
        if payment.status is PaymentStatus.REJECTED_BY_RISK:
            stats.rejections[payment.failure_reason or "risk"] += 1
            return
        session_id = await self._wait_for_session(payment.payment_id, payment.psp_session_id)
        if session_id is None:
            return
        await trio.sleep(rng.uniform(1.0, max(1.0, tr.think_s_max)))
        choice = rng.random()
        if choice < tr.pay_p:
            stats.buyer_outcomes["paid"] += 1
            psp.buyer_pays(session_id)
        elif choice < tr.pay_p + tr.decline_p:
            stats.buyer_outcomes["declined"] += 1
            psp.buyer_declined(session_id)
        elif choice < tr.pay_p + tr.decline_p + tr.review_p:
            stats.buyer_outcomes["review"] += 1
            if psp.buyer_in_review(session_id) is None:
                return
            await trio.sleep(rng.uniform(0.5, max(0.5, tr.review_hours_max)) * 3600.0)
            if rng.random() < tr.review_approve_p:
                stats.buyer_outcomes["review_approved"] += 1
                psp.review_approves(session_id)
            else:
                stats.buyer_outcomes["review_declined"] += 1
                psp.review_declines(session_id)
        else:
            stats.buyer_outcomes["abandoned"] += 1

    async def _checkout(
        self, command: CreateCheckout, wait_s: float | None, attempts_max: int = CLIENT_ATTEMPTS_MAX
    ) -> PaymentView | Rejection | None:
        """Send the checkout until an answer comes; check it against earlier answers."""
        for attempt in range(1, attempts_max + 1):
            reply = await self.world.request(
                lambda engine: engine.service.create_checkout(command, register_timeout_s=wait_s)
            )
            if reply is not None:
                self._check_reply(command, reply)
                return reply
            self.world.stats.client_retries += 1
            await trio.sleep(min(CLIENT_RETRY_S_MAX, 0.5 * 2**attempt))
        return None

    async def _reuse_checkout_id(self, command: CreateCheckout) -> None:
        """A buggy client sends another cart (one minor unit more) under a used checkout id:
        the answer must be the refusal `checkout_id_reused`, never a payment."""
        world = self.world
        first = command.orders[0]
        other = attrs.evolve(
            command,
            orders=(attrs.evolve(first, amount_minor=first.amount_minor + 1), *command.orders[1:]),
        )
        world.stats.buyer_outcomes["checkout_id_reused"] += 1
        for attempt in range(1, CLIENT_ATTEMPTS_MAX + 1):
            reply = await world.request(lambda engine: engine.service.create_checkout(other))
            if reply is not None:
                break
            await trio.sleep(min(CLIENT_RETRY_S_MAX, 0.5 * 2**attempt))
        else:
            return
        if isinstance(reply, Rejection) and reply.reason == "checkout_id_reused":
            return
        answer = reply.reason if isinstance(reply, Rejection) else reply.payment.payment_id
        world.idempotency_breaks.append(
            f"{command.checkout_id}: another cart under this id was answered {answer}"
        )
        world.violate(
            Violation(
                "idempotent_replies",
                "a checkout id reused for another cart was not refused",
                tuple(world.idempotency_breaks[-1:]),
            )
        )

    def _check_reply(self, command: CreateCheckout, reply: PaymentView | Rejection) -> None:
        world = self.world
        if isinstance(reply, Rejection):
            world.stats.rejections[reply.reason] += 1
            world.note("checkout", command.checkout_id, reply.reason)
            world.idempotency_breaks.append(
                f"{command.checkout_id}: the same request was refused ({reply.reason})"
            )
            return
        payment_id = reply.payment.payment_id
        if reply.created:
            # One request created the payment; every other answer replays it (200, not 201).
            if command.checkout_id in self.created:
                world.idempotency_breaks.append(
                    f"{command.checkout_id}: a second answer says it created {payment_id}"
                )
                world.violate(
                    Violation(
                        "idempotent_replies",
                        "a repeated checkout was answered as newly created",
                        tuple(world.idempotency_breaks[-1:]),
                    )
                )
            self.created.add(command.checkout_id)
        first = self.replies.setdefault(command.checkout_id, payment_id)
        world.note("checkout", command.checkout_id, payment_id, reply.payment.status.value)
        if first != payment_id:
            world.idempotency_breaks.append(
                f"{command.checkout_id}: answered {first}, then {payment_id}"
            )
            world.violate(
                Violation(
                    "idempotent_replies",
                    "a repeated checkout got a different payment",
                    tuple(world.idempotency_breaks[-1:]),
                )
            )

    async def _wait_for_session(self, payment_id: str, session_id: str | None) -> str | None:
        """Poll the payment until the PSP page exists (the client sees CREATED until then)."""
        deadline = trio.current_time() + SESSION_WAIT_S_MAX
        while session_id is None and trio.current_time() < deadline:
            await trio.sleep(2.0)
            view = await self.world.request(lambda engine: engine.service.get_payment(payment_id))
            if view is None:
                continue
            if is_terminal(view.payment.status):
                return None
            session_id = view.payment.psp_session_id
        return session_id
