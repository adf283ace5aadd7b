"""Merchant notifications: the `notifications` outbox subscriber's handler, over HTTP.

For each outbox message it finds the merchants concerned, and POSTs each one that registered
an endpoint a Standard Webhooks event (web/merchant_signing.py):

    {"type": "order.succeeded", "timestamp": "2026-...Z", "data": {...}}

Routing: `order.*` goes to the order's seller (from the payload, or the stored order when the
payload does not name it). `payment.*` concerns a checkout with several sellers, so it goes to
every seller of the checkout, each receiving only its own orders (order id, amount, status):
never another seller's amounts nor the checkout's total.

Delivery semantics: a merchant without an enabled endpoint has nothing to receive (the message
is acked). Any transport error, timeout or non-2xx answer (redirects are not followed) raises,
so the consumer retries the whole message with the notifications schedule (about 3 days, see
engine/limits.py) and then dead-letters it. Retrying the whole message means a merchant that
already answered 2xx can receive it again: delivery is at-least-once, and receivers
deduplicate on `webhook-id` (the outbox message id, the same on every attempt).
"""

from __future__ import annotations

import datetime
import functools
import json
import ssl
from collections.abc import Mapping
from typing import Any

import httpx
import trio

from engine.access import WebhookEndpoint
from engine.money import format_amount
from engine.ports import Clock
from engine.records import OutboxMessage
from engine.store.port import Store
from web.merchant_signing import signed_headers

#: Per-request deadline; below the outbox's 30 s handler timeout.
NOTIFY_HTTP_TIMEOUT_S = 10.0
#: The longest error text kept per failed merchant in the raised error.
ERROR_TEXT_MAX = 120


class NotificationFailed(Exception):
    """At least one merchant did not acknowledge the notification with a 2xx."""


def _iso(ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every delivery: building one (loading the CA bundle) costs
    milliseconds of CPU, which per notification was most of the server's time under load."""
    return httpx.create_ssl_context()


def _amount(payload: Mapping[str, Any]) -> str:
    return format_amount(int(payload["amount_minor"]), str(payload["currency"]))


class WebhookNotifier:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = NOTIFY_HTTP_TIMEOUT_S,
    ) -> None:
        self._store = store
        self._clock = clock
        self._transport = transport
        self._timeout_s = timeout_s

    async def recipients(self, message: OutboxMessage) -> dict[str, dict[str, Any]]:
        """merchant id -> the event's `data` for that merchant."""
        payload = message.payload
        if message.topic.startswith("order."):
            seller = payload.get("seller_id")
            data = {"object": "order", **payload}
            if seller is None:
                order = await self._store.get_order(str(payload["order_id"]))
                if order is None:
                    return {}
                seller = order.seller_id
                data.update(payment_id=order.payment_id, seller_id=seller)
            if "amount_minor" in data:
                data["amount"] = _amount(payload)
                del data["amount_minor"]
            return {str(seller): data}
        if message.topic.startswith(("refund.", "dispute.")):
            # A refund or a dispute names its order's seller (actors/refund.py,
            # actors/dispute.py): only that seller hears it.
            seller = payload.get("seller_id")
            if seller is None:
                return {}
            data = {"object": message.topic.partition(".")[0], **payload}
            if "amount_minor" in data:
                data["amount"] = _amount(payload)
                del data["amount_minor"]
            return {str(seller): data}
        if message.topic.startswith("payout."):
            # A payout names its merchant (actors/merchant.py): only that merchant hears it.
            data = {"object": "payout", **payload}
            data["amount"] = _amount(payload)
            del data["amount_minor"]
            return {str(payload["merchant_id"]): data}
        if message.topic.startswith("payment."):
            by_seller: dict[str, dict[str, Any]] = {}
            for order in await self._store.get_orders(str(payload["payment_id"])):
                data = by_seller.setdefault(
                    order.seller_id,
                    {
                        "object": "payment",
                        "payment_id": payload["payment_id"],
                        "checkout_id": payload.get("checkout_id"),
                        "status": payload.get("status"),
                        "currency": order.currency,
                        "orders": [],
                    },
                )
                data["orders"].append(
                    {
                        "order_id": order.order_id,
                        "amount": format_amount(order.amount_minor, order.currency),
                        "status": order.status.value.lower(),
                    }
                )
            return by_seller
        return {}

    async def __call__(self, message: OutboxMessage) -> None:
        targets = await self.recipients(message)
        deliveries = []
        for merchant_id, data in targets.items():
            endpoint = await self._store.get_webhook_endpoint(merchant_id)
            if endpoint is not None and endpoint.enabled:
                deliveries.append((merchant_id, endpoint, data))
        if not deliveries:  # the common case: no client to build, nothing to send
            return
        failures: list[str] = []
        async with (
            httpx.AsyncClient(
                transport=self._transport,
                timeout=self._timeout_s,
                follow_redirects=False,
                verify=_tls_context(),
            ) as client,
            trio.open_nursery() as nursery,
        ):
            for merchant_id, endpoint, data in deliveries:
                nursery.start_soon(
                    self._send, client, message, merchant_id, endpoint, data, failures
                )
        if failures:
            raise NotificationFailed("; ".join(failures)[: ERROR_TEXT_MAX * 4])

    async def _send(
        self,
        client: httpx.AsyncClient,
        message: OutboxMessage,
        merchant_id: str,
        endpoint: WebhookEndpoint,
        data: dict[str, Any],
        failures: list[str],
    ) -> None:
        event = {"type": message.topic, "timestamp": _iso(message.created_at_ms), "data": data}
        body = json.dumps(event, separators=(",", ":"), sort_keys=True).encode()
        headers = signed_headers(
            endpoint.secret, message.message_id, self._clock.now_ms() // 1000, body
        )
        headers["content-type"] = "application/json"
        try:
            response = await client.post(endpoint.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            failures.append(f"{merchant_id}: {type(exc).__name__}"[:ERROR_TEXT_MAX])
            return
        if not 200 <= response.status_code < 300:
            failures.append(f"{merchant_id}: HTTP {response.status_code}"[:ERROR_TEXT_MAX])


def webhook_notifier(store: Store, clock: Clock) -> WebhookNotifier:
    """The app's notifier (`Wiring.make_notifier` default)."""
    return WebhookNotifier(store, clock)
