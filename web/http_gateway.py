"""The `Gateway` port over HTTP (httpx on trio), against the fake PSP's HTTP face.

Why it exists: with it, the engine's whole pay-in flow runs over real sockets (the demo, the
real-HTTP test tier, the benchmark), exactly as it would against a real PSP. Mapping rules: a
transport error, a timeout or a 5xx means the outcome is unknown, so it raises
`GatewayUnavailable` and the engine retries with the same idempotency key or queries; a 2xx is
parsed into the port's values; a 404 on a query means the PSP never received the key. A refund
refusal is the PSP's 400 with a `RefundRefusal` code (a FAILED result); its 400
`idempotency_error` raises `IdempotencyKeyReused`; any other 4xx is unknown outcome too.
Amounts cross as integer minor units plus currency, as in Stripe's API (never floats).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from engine.gateway import (
    CaptureResult,
    CaptureStatus,
    GatewayUnavailable,
    IdempotencyKeyReused,
    PspRefundStatus,
    RefundRefusal,
    RefundResult,
    Registration,
    SessionStatus,
)
from engine.money import Money

#: Per-call deadline; the engine also bounds each call with its own psp_call_timeout_s.
PSP_HTTP_TIMEOUT_S = 10.0
#: Connections kept to the PSP.
PSP_CONNECTIONS_MAX = 50


class HttpGateway:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def _send(
        self, method: str, path: str, body: dict[str, Any] | None, key: str | None
    ) -> httpx.Response:
        headers = {} if key is None else {"Idempotency-Key": key}
        try:
            return await self._client.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise GatewayUnavailable(
                f"PSP call {method} {path} failed: {type(exc).__name__}"
            ) from exc

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, key: str | None = None
    ) -> dict[str, Any] | None:
        response = await self._send(method, path, body, key)
        if response.status_code == 404:
            return None
        if response.status_code >= 300:
            raise GatewayUnavailable(f"PSP answered {response.status_code} to {method} {path}")
        data = response.json()
        assert isinstance(data, dict)
        return data

    async def register_checkout(
        self, nonce: str, amount: Money, return_url: str | None
    ) -> Registration:
        body = {"amount_total": amount.minor, "currency": amount.currency, "return_url": return_url}
        session = await self._call("POST", "/v1/checkout/sessions", body, key=nonce)
        if session is None:
            raise GatewayUnavailable("PSP has no session endpoint")
        return Registration(str(session["id"]), str(session["url"]))

    async def session_status(self, session_id: str) -> SessionStatus:
        session = await self._call("GET", f"/v1/checkout/sessions/{session_id}")
        if session is None:
            raise GatewayUnavailable(f"PSP does not know session {session_id}")
        return SessionStatus(session["status"])

    async def expire_session(self, session_id: str) -> SessionStatus:
        session = await self._call("POST", f"/v1/checkout/sessions/{session_id}/expire")
        if session is None:
            raise GatewayUnavailable(f"PSP does not know session {session_id}")
        return SessionStatus(session["status"])

    async def capture(self, idempotency_key: str, session_id: str, amount: Money) -> CaptureResult:
        body = {"session_id": session_id, "amount": amount.minor, "currency": amount.currency}
        capture = await self._call("POST", "/v1/captures", body, key=idempotency_key)
        if capture is None:
            raise GatewayUnavailable("PSP has no capture endpoint")
        return _capture_result(capture)

    async def query_capture(self, idempotency_key: str) -> CaptureResult:
        capture = await self._call("GET", f"/v1/captures/{idempotency_key}")
        if capture is None:
            return CaptureResult(CaptureStatus.NOT_FOUND)
        return _capture_result(capture)

    async def refund(self, idempotency_key: str, capture_id: str, amount: Money) -> RefundResult:
        body = {"capture_id": capture_id, "amount": amount.minor, "currency": amount.currency}
        response = await self._send("POST", "/v1/refunds", body, idempotency_key)
        if response.status_code == 400:
            error = _error_of(response)
            if error.get("type") == "idempotency_error":
                raise IdempotencyKeyReused(str(error.get("message", idempotency_key)))
            code = error.get("code")
            if code in _REFUSALS:
                return RefundResult(PspRefundStatus.FAILED, None, str(code))
        if response.status_code >= 300:
            raise GatewayUnavailable(f"PSP answered {response.status_code} to POST /v1/refunds")
        return _refund_result(_json_of(response))

    async def query_refund(self, idempotency_key: str) -> RefundResult:
        refund = await self._call("GET", f"/v1/refunds/{idempotency_key}")
        if refund is None:
            return RefundResult(PspRefundStatus.NOT_FOUND)
        return _refund_result(refund)


_REFUSALS = frozenset(r.value for r in RefundRefusal)


def _json_of(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError as exc:
        raise GatewayUnavailable(f"PSP answered {response.status_code} without JSON") from exc
    if not isinstance(data, dict):
        raise GatewayUnavailable(f"PSP answered {response.status_code} with a non-object")
    return data


def _error_of(response: httpx.Response) -> dict[str, Any]:
    error = _json_of(response).get("error")
    return error if isinstance(error, dict) else {}


def _refund_result(refund: dict[str, Any]) -> RefundResult:
    status = PspRefundStatus(refund["status"])
    refund_id, reason = refund.get("id"), refund.get("reason")
    return RefundResult(
        status,
        None if refund_id is None else str(refund_id),
        None if reason is None else str(reason),
    )


def _capture_result(capture: dict[str, Any]) -> CaptureResult:
    return CaptureResult(CaptureStatus(capture["status"]), capture.get("id"), capture.get("reason"))


@asynccontextmanager
async def open_http_gateway(
    base_url: str, timeout_s: float = PSP_HTTP_TIMEOUT_S
) -> AsyncIterator[HttpGateway]:
    limits = httpx.Limits(max_connections=PSP_CONNECTIONS_MAX)
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout_s, limits=limits) as client:
        yield HttpGateway(client)
