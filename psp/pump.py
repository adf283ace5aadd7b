"""The fake PSP's webhook sender: every event the FakePsp emits is POSTed, signed, to the
merchant's (our) webhook URL over real HTTP, and retried with backoff until a 2xx, as a real
PSP does. Each attempt is signed afresh (new timestamp), so a slow retry never goes stale.

Delivered events are logged (`sent`) so tests can replay one verbatim as a duplicate. Events
are encoded and signed by psp/events.py (Stripe's envelope and signature). A fault plan
(`plan`, psp/faults.py) may lose an event, send it several times, late, or add a forged copy
(signed with a secret nobody has, sent once).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs
import httpx
import trio

from engine.gateway import PspNotification
from engine.ports import Clock
from psp.events import encode_event, sign_header
from psp.payout_desk import PayoutEvent
from psp.payout_events import encode_payout_event

#: What the pump sends: the PSP's payment events and the payouts desk's (psp/payout_desk.py).
Event = PspNotification | PayoutEvent


@attrs.frozen
class PumpLimits:
    attempts_max: int = 20
    delay_s_base: float = 0.5
    delay_s_max: float = 60.0
    concurrency_max: int = 16
    request_timeout_s: float = 10.0
    sent_kept_max: int = 10_000
    #: Copies waiting for their delay or their turn to send; the pump waits beyond this.
    copies_pending_max: int = 10_000


#: The secret a forged copy is signed with: no receiver has it.
FORGED_SECRET = "whsec_forged_by_nobody"


@attrs.frozen
class Delivery:
    """One copy of an event to send, `delay_s` after it was emitted."""

    delay_s: float = 0.0
    forged: bool = False


ONCE = (Delivery(),)


@attrs.define(eq=False)
class WebhookPump:
    #: None: nobody listens (`payengine psp serve` without --webhook-url); events are dropped.
    webhook_url: str | None
    secrets: tuple[str, ...]
    clock: Clock
    limits: PumpLimits = attrs.Factory(PumpLimits)
    #: (body, Stripe-Signature) of delivered events, newest last (bounded).
    sent: list[tuple[bytes, str]] = attrs.Factory(list)
    failed: int = 0
    #: How each event is delivered (a fault plan); None: once, at once.
    plan: Callable[[PspNotification], Sequence[Delivery]] | None = None
    #: The same for the payouts desk's events; None: once, at once.
    payout_plan: Callable[[PayoutEvent], Sequence[Delivery]] | None = None

    async def run(
        self,
        events: trio.MemoryReceiveChannel[PspNotification] | trio.MemoryReceiveChannel[PayoutEvent],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        limiter = trio.CapacityLimiter(self.limits.concurrency_max)
        pending = trio.CapacityLimiter(self.limits.copies_pending_max)
        async with (
            httpx.AsyncClient(timeout=self.limits.request_timeout_s) as client,
            trio.open_nursery() as nursery,
        ):
            task_status.started()
            async for event in events:
                if self.webhook_url is None:
                    continue
                for delivery in self._deliveries(event):
                    token = object()
                    await pending.acquire_on_behalf_of(token)
                    nursery.start_soon(self._copy, client, limiter, pending, token, event, delivery)

    def _deliveries(self, event: Event) -> Sequence[Delivery]:
        if isinstance(event, PayoutEvent):
            return ONCE if self.payout_plan is None else self.payout_plan(event)
        return ONCE if self.plan is None else self.plan(event)

    async def _copy(
        self,
        client: httpx.AsyncClient,
        limiter: trio.CapacityLimiter,
        pending: trio.CapacityLimiter,
        token: object,
        event: Event,
        delivery: Delivery,
    ) -> None:
        try:
            await trio.sleep(delivery.delay_s)
            async with limiter:
                await self._deliver(client, event, delivery.forged)
        finally:
            pending.release_on_behalf_of(token)

    async def _deliver(self, client: httpx.AsyncClient, event: Event, forged: bool) -> None:
        assert self.webhook_url is not None
        secrets = (FORGED_SECRET,) if forged else self.secrets
        body = encode_payout_event(event) if isinstance(event, PayoutEvent) else encode_event(event)
        delay_s = self.limits.delay_s_base
        for _ in range(1 if forged else self.limits.attempts_max):
            header = sign_header(secrets, self.clock.now_ms() // 1000, body)
            try:
                response = await client.post(
                    self.webhook_url,
                    content=body,
                    headers={"Stripe-Signature": header, "Content-Type": "application/json"},
                )
                if 200 <= response.status_code < 300:
                    self.sent.append((body, header))
                    del self.sent[: -self.limits.sent_kept_max]
                    return
            except httpx.HTTPError:
                pass
            if forged:
                return  # refused, as it must be; a forger does not retry
            await trio.sleep(delay_s)
            delay_s = min(self.limits.delay_s_max, delay_s * 2)
        self.failed += 1
