"""Webhook delivery in the simulated world: the PSP's sender, the network's faults, our endpoint.

Why apart from the world: the fake PSP only puts each notification once on its channel; getting
it to us is a job of its own, and the place where most of the plan's webhook faults live. The
sender takes each event off the channel and, while the faults are on, loses, duplicates,
delays, reorders or forges it (all drawn from the `webhooks` stream, in a fixed order, so a
seed replays the same deliveries). Each delivery retries what is not answered 200 with
exponential backoff, `WEBHOOK_ATTEMPTS_MAX` times, as a real PSP does for about 3 days.

The endpoint is ours: it verifies the signature, parses the body and hands the event to the
current engine incarnation through `SimWorld.request`, so a crash breaks the delivery the way a
dropped connection would (answered 503, and the PSP tries again). A forgery must be answered
401; anything else is a violation.

`in_flight` counts deliveries not finished yet: the world is not quiet while one is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import trio

from engine.gateway import PspNotification
from simulator.determinism import stream
from simulator.oracle import Violation
from simulator.oracle_webhooks import check_webhook_answer, status_before_event
from simulator.psp_wire_events import parse_event
from simulator.signing import SignatureInvalid, sign_webhook, verify_webhook
from simulator.store import SimStore

if TYPE_CHECKING:
    from simulator.world import SimWorld

#: The PSP retries an unacknowledged webhook this many times (Stripe: about 3 days).
WEBHOOK_ATTEMPTS_MAX = 16
WEBHOOK_RETRY_S_MAX = 3600.0
#: Webhook delay without the delay fault: the PSP's normal dispatch latency (seconds).
WEBHOOK_DISPATCH_S_MAX = 2.0
#: Reordering holds an event back by up to this long, so later events overtake it.
WEBHOOK_REORDER_S_MAX = 30.0


class WebhookDelivery:
    def __init__(self, world: SimWorld) -> None:
        self.world = world
        self.rng = stream(world.seed, "webhooks")
        #: Deliveries (genuine or forged) started and not finished.
        self.in_flight = 0

    async def dispatch(self) -> None:
        """Take every event the PSP emits and start its deliveries, faults included."""
        world = self.world
        rng = self.rng
        async with trio.open_nursery() as nursery:
            while True:
                event = await world.psp.webhook_receive.receive()
                world.stats.webhooks_emitted += 1
                f = world.plan
                copies = 1
                delay_s = rng.uniform(0.0, WEBHOOK_DISPATCH_S_MAX)
                if world.faults_on:
                    if rng.random() < f.webhook_loss_p:
                        world.fault("webhook_lost", event.event_id, event.kind.value)
                        continue
                    if rng.random() < f.webhook_duplicate_p:
                        copies += rng.randint(1, f.webhook_duplicates_max)
                        world.fault("webhook_duplicated", event.event_id, copies)
                    if rng.random() < f.webhook_delay_p:
                        delay_s += rng.uniform(0.0, f.webhook_delay_s_max)
                        world.fault("webhook_delayed", event.event_id, round(delay_s, 3))
                    elif rng.random() < f.webhook_reorder_p:
                        delay_s += rng.uniform(WEBHOOK_DISPATCH_S_MAX, WEBHOOK_REORDER_S_MAX)
                        world.fault("webhook_reordered", event.event_id)
                    if rng.random() < f.webhook_forged_p:
                        world.fault("webhook_forged", event.event_id)
                        self.in_flight += 1
                        nursery.start_soon(self._send_forged, event, rng.uniform(0.0, 5.0))
                for copy in range(copies):
                    self.in_flight += 1
                    extra_s = rng.uniform(0.0, 1.0) * copy
                    nursery.start_soon(self._send, event, delay_s + extra_s)

    async def _send(self, event: PspNotification, delay_s: float) -> None:
        world = self.world
        try:
            await trio.sleep(delay_s)
            for attempt in range(1, WEBHOOK_ATTEMPTS_MAX + 1):
                if world.webhooks_stalled:  # the PSP's sender is down with the rest of it
                    await world.outage_over.wait()
                body, header = world.psp.signed(event, world.clock.now_ms() // 1000)
                status = await self.endpoint(body, header)
                world.note("webhook", event.event_id, event.kind.value, event.reference, status)
                if status == 200:
                    return
                await trio.sleep(min(WEBHOOK_RETRY_S_MAX, 2.0**attempt))
            world.stats.webhooks_given_up += 1
            world.note("webhook_given_up", event.event_id)
        finally:
            self.in_flight -= 1

    async def _send_forged(self, event: PspNotification, delay_s: float) -> None:
        """A forgery: the event turned into a capture success, signed with a guessed secret."""
        world = self.world
        try:
            await trio.sleep(delay_s)
            forged = attrs.evolve(event, event_id=f"{event.event_id}_forged")
            body, _ = world.psp.signed(forged, 0)
            header = sign_webhook(b"whsec_guessed", world.clock.now_ms() // 1000, body)
            status = await self.endpoint(body, header)
            world.note("webhook_forged", event.event_id, status)
            if status != 401:
                world.forged_accepted += 1
                world.violate(
                    Violation(
                        "forged_webhooks_rejected",
                        f"a forged webhook was answered {status}",
                        (forged.event_id,),
                    )
                )
        finally:
            self.in_flight -= 1

    async def endpoint(self, body: bytes, signature: str | None) -> int:
        """Our webhook endpoint: verify, parse, hand to the engine; the HTTP status it answers."""
        world = self.world
        try:
            verify_webhook(world.psp.webhook_secret, signature, body, world.clock.now_ms() // 1000)
        except SignatureInvalid:
            world.stats.webhook_answers["401"] += 1
            return 401
        try:
            event = parse_event(body)
        except (ValueError, KeyError):
            world.stats.webhook_answers["400"] += 1
            return 400
        store = world.store
        before = None
        if isinstance(store, SimStore):  # the event's aggregate, before the engine sees it
            before = status_before_event(
                event.kind, event.reference, store.committed_payments(), store.committed_orders()
            )
        outcome = await world.request(lambda engine: engine.service.handle_psp_event(event))
        if outcome == "retry_later" and before is not None:
            # Bouncing is for an event that cannot apply yet (its checkout's session or its
            # order not started); one that could was bounced, and the PSP gives up in 3 days.
            world.violate(
                Violation(
                    "webhook_effect_committed",
                    "a webhook that could apply was answered retry_later",
                    (f"{event.kind} {event.event_id} for {event.reference} ({before})",),
                )
            )
        world.stats.webhook_answers[outcome or "connection_lost"] += 1
        if outcome is None or outcome == "retry_later":
            return 503
        if isinstance(store, SimStore):  # committed rows readable at this instant
            problem = check_webhook_answer(
                event.kind, event.reference, store.committed_payments(), store.committed_orders()
            )
            if problem is None and not store.has_psp_event(event.event_id):
                # Unrecorded, a redelivery would be applied again: dedup needs the id kept.
                problem = f"{event.kind} {event.event_id} answered 2xx but not recorded"
            if problem is not None:
                world.violate(
                    Violation(
                        "webhook_effect_committed",
                        f"a webhook answered 200 ({outcome}) without its effect",
                        (problem,),
                    )
                )
        return 200
