"""Wrappers that tell the timeline what crosses the engine's edges: each PSP call with its
outcome (an unknown outcome too: that is when the engine must retry with the same key), and
each outbox message the merchant notifier delivers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from engine.gateway import (
    CaptureResult,
    DisputeResult,
    Gateway,
    GatewayUnavailable,
    RefundResult,
    Registration,
    SessionStatus,
)
from engine.money import Money
from engine.records import OutboxMessage
from teach.timeline import Timeline

T = TypeVar("T")


def _outcome(result: Any) -> str:
    if isinstance(result, Registration):
        return f"session {result.session_id}"
    if isinstance(result, CaptureResult | RefundResult):
        return str(result.status.value)
    if isinstance(result, SessionStatus):
        return str(result.value)
    return type(result).__name__


class RecordingGateway:
    """A Gateway that records every call on the timeline, then behaves as `inner`."""

    def __init__(self, inner: Gateway, timeline: Timeline) -> None:
        self._inner = inner
        self._timeline = timeline

    async def _call(
        self, what: str, key: str, payment_id: str | None, call: Callable[[], Awaitable[T]]
    ) -> T:
        try:
            result = await call()
        except GatewayUnavailable as exc:
            self._timeline.add(
                "psp", "PSP", f"{what} → outcome unknown", f"{key}: {exc}", payment_id
            )
            raise
        self._timeline.add("psp", "PSP", f"{what} → {_outcome(result)}", key, payment_id)
        return result

    async def register_checkout(
        self, nonce: str, amount: Money, return_url: str | None
    ) -> Registration:
        return await self._call(
            "register_checkout",
            nonce,
            nonce,
            lambda: self._inner.register_checkout(nonce, amount, return_url),
        )

    async def session_status(self, session_id: str) -> SessionStatus:
        return await self._call(
            "session_status", session_id, None, lambda: self._inner.session_status(session_id)
        )

    async def expire_session(self, session_id: str) -> SessionStatus:
        return await self._call(
            "expire_session", session_id, None, lambda: self._inner.expire_session(session_id)
        )

    async def capture(self, idempotency_key: str, session_id: str, amount: Money) -> CaptureResult:
        return await self._call(
            "capture",
            idempotency_key,
            None,
            lambda: self._inner.capture(idempotency_key, session_id, amount),
        )

    async def query_capture(self, idempotency_key: str) -> CaptureResult:
        return await self._call(
            "query_capture",
            idempotency_key,
            None,
            lambda: self._inner.query_capture(idempotency_key),
        )

    async def refund(self, idempotency_key: str, capture_id: str, amount: Money) -> RefundResult:
        return await self._call(
            "refund",
            idempotency_key,
            None,
            lambda: self._inner.refund(idempotency_key, capture_id, amount),
        )

    async def query_refund(self, idempotency_key: str) -> RefundResult:
        return await self._call(
            "query_refund",
            idempotency_key,
            None,
            lambda: self._inner.query_refund(idempotency_key),
        )

    async def query_dispute(self, dispute_id: str) -> DisputeResult:
        return await self._call(
            "query_dispute", dispute_id, None, lambda: self._inner.query_dispute(dispute_id)
        )


def recording_notifier(
    inner: Callable[[OutboxMessage], Awaitable[None]], timeline: Timeline
) -> Callable[[OutboxMessage], Awaitable[None]]:
    """The merchant notifier, recording each outbox message it delivers (or fails to)."""

    async def notify(message: OutboxMessage) -> None:
        payment_id = message.payload.get("payment_id")
        pid = payment_id if isinstance(payment_id, str) else None
        try:
            await inner(message)
        except Exception as exc:  # recorded, then the outbox retries it (trio.Cancelled passes)
            timeline.add(
                "outbox",
                "notifications",
                f"{message.topic} → delivery failed, will retry",
                f"{message.key}: {exc}",
                pid,
            )
            raise
        timeline.add("outbox", "notifications", f"{message.topic} delivered", message.key, pid)

    return notify
