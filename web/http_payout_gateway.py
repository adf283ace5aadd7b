"""The `PayoutGateway` port over Stripe's Payouts API, through the official `stripe` library.

Why: `payengine serve` pays sellers through the same PSP it takes payments with (Stripe Connect
payouts, Adyen payouts), over real HTTP: the fake PSP's payouts (psp/payouts.py) in tests, the
demo and `serve`; Stripe's own with another `base_url` and key (docs/psp.md).

Mapping:
- a payout is `POST /v1/payouts` (`amount`, `currency`, `destination`, metadata
  `{payengine_payout: <our payout id>}`) with Idempotency-Key = our payout id, so a retry after
  a timeout is the same payout there;
- `query_payout(key)` retrieves the payout by its provider id when this process has seen it,
  else scans the newest payouts for the metadata tag (Stripe cannot search payouts), at most
  `payout_scan_pages_max` pages: NOT_FOUND after that (the engine then submits again with the
  same key, which the provider answers from its idempotency store, or keeps asking);
- Stripe's statuses: pending and in_transit -> PENDING, paid -> PAID, failed and canceled ->
  FAILED, or RETURNED when the object says `returned` (the fake PSP's one addition: Stripe
  tells a bank return only by a paid payout turning failed; web/payout_wire.py reads that);
- unknown outcomes raise `GatewayUnavailable`, never a failure: connection errors, timeouts,
  5xx, 409 (a request with this key still running), 429, an authentication or permission
  error, and a key reused with other parameters (a bug: a person must look; the engine keeps
  asking). A 400 invalid request is the provider refusing the payout at once: FAILED with the
  error's code as reason (nothing left; the engine voids the reserve).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import stripe

from engine.gateway import GatewayUnavailable
from engine.money import Money
from engine.payout_gateway import PayoutResult, ProviderPayoutStatus
from web.http_gateway import FAKE_PSP_API_KEY, PSP_HTTP_TIMEOUT_S, stripe_client

#: The metadata key that tags our payouts with our payout id.
PAYOUT_METADATA_KEY = "payengine_payout"
#: Pages of 100 payouts `query_payout` reads before it answers NOT_FOUND.
PAYOUT_SCAN_PAGES_MAX = 10
#: Our payout id -> the provider's, for the payouts this process has seen (ids never change).
PAYOUT_IDS_KEPT_MAX = 10_000

_STATUS = {
    "pending": ProviderPayoutStatus.PENDING,
    "in_transit": ProviderPayoutStatus.PENDING,
    "paid": ProviderPayoutStatus.PAID,
    "failed": ProviderPayoutStatus.FAILED,
    "canceled": ProviderPayoutStatus.FAILED,
}


def unknown(call: str, exc: Exception) -> GatewayUnavailable:
    status = getattr(exc, "http_status", None)
    return GatewayUnavailable(
        f"payout call {call} failed: {type(exc).__name__} {status or ''}".rstrip()
    )


def payout_result(payout: Any) -> PayoutResult:
    """Stripe's Payout object as the port's result."""
    status = _STATUS.get(str(payout.get("status")))
    if status is None:
        raise GatewayUnavailable(f"payout {payout.get('id')} has status {payout.get('status')!r}")
    if status is ProviderPayoutStatus.FAILED and payout.get("returned"):
        status = ProviderPayoutStatus.RETURNED
    reason = payout.get("failure_code") if status in _FAILED else None
    return PayoutResult(status, str(payout["id"]), None if reason is None else str(reason))


_FAILED = frozenset({ProviderPayoutStatus.FAILED, ProviderPayoutStatus.RETURNED})


class HttpPayoutGateway:
    def __init__(self, client: stripe.StripeClient, scan_pages_max: int = PAYOUT_SCAN_PAGES_MAX):
        self._client = client
        self._scan_pages_max = scan_pages_max
        self._ids: OrderedDict[str, str] = OrderedDict()

    @property
    def _v1(self) -> Any:
        return self._client.v1

    def _remember(self, key: str, result: PayoutResult) -> PayoutResult:
        if result.payout_id is not None:
            self._ids[key] = result.payout_id
            self._ids.move_to_end(key)
            while len(self._ids) > PAYOUT_IDS_KEPT_MAX:
                self._ids.popitem(last=False)
        return result

    async def submit_payout(
        self, idempotency_key: str, destination: str, amount: Money
    ) -> PayoutResult:
        assert amount.minor > 0, amount
        params = {
            "amount": amount.minor,
            "currency": amount.currency.lower(),
            "destination": destination,
            "metadata": {PAYOUT_METADATA_KEY: idempotency_key},
        }
        try:
            payout = await self._v1.payouts.create_async(
                params, {"idempotency_key": idempotency_key}
            )
        except stripe.IdempotencyError as exc:
            raise unknown(f"submit {idempotency_key} (key reused)", exc) from exc
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 400:  # refused at once: nothing was paid
                reason = exc.code or "invalid_request"
                return PayoutResult(ProviderPayoutStatus.FAILED, None, reason)
            raise unknown(f"submit {idempotency_key}", exc) from exc
        except stripe.StripeError as exc:
            raise unknown(f"submit {idempotency_key}", exc) from exc
        return self._remember(idempotency_key, payout_result(payout))

    async def query_payout(self, idempotency_key: str) -> PayoutResult:
        known = self._ids.get(idempotency_key)
        try:
            if known is not None:
                return payout_result(await self._v1.payouts.retrieve_async(known))
            params: dict[str, Any] = {"limit": 100}
            for _ in range(self._scan_pages_max):
                page = await self._v1.payouts.list_async(params)
                for payout in page["data"]:
                    if (payout.get("metadata") or {}).get(PAYOUT_METADATA_KEY) == idempotency_key:
                        return self._remember(idempotency_key, payout_result(payout))
                if not page["has_more"] or not page["data"]:
                    break
                params["starting_after"] = page["data"][-1]["id"]
        except stripe.StripeError as exc:
            raise unknown(f"query {idempotency_key}", exc) from exc
        return PayoutResult(ProviderPayoutStatus.NOT_FOUND)


@asynccontextmanager
async def open_http_payout_gateway(
    base_url: str, api_key: str = FAKE_PSP_API_KEY, timeout_s: float = PSP_HTTP_TIMEOUT_S
) -> AsyncIterator[HttpPayoutGateway]:
    """A payout gateway to the Stripe API at `base_url` (the fake PSP, or Stripe's)."""
    async with stripe_client(base_url, api_key, timeout_s) as client:
        yield HttpPayoutGateway(client)
