"""Idempotency-Key for creating POSTs (IETF draft-ietf-httpapi-idempotency-key-header).

Guarantees, per (API key, Idempotency-Key), stored in the Store (PostgreSQL in production, so
they hold across processes and restarts):

- no key: 400. A key longer than `idempotency_key_length_max` or not printable ASCII: 400.
- first request: claimed (in flight), executed, and its response (status, body bytes, the
  headers that matter) stored in the same record.
- same key, same request (method, path and body bytes): the stored response, byte for byte and
  with its status, plus `Idempotent-Replayed: true`.
- same key, different request: 422. Same key while the first is still in flight: 409.
- a handler that fails (exception, 5xx, deadline) releases the claim, so a retry runs again.
  The engine's own dedup on `checkout_id` keeps such a retry from creating a second payment.
- a claim records its owner, the process incarnation (web/runtime.py), which holds a lease in
  the database renewed every `process_heartbeat_interval_s`. A claim whose owner's lease has
  lapsed (the process was killed mid-request) is taken over at once by the retry, atomically
  (one process wins); so is a claim of this very process that none of its requests runs (its
  release failed, e.g. in a database outage). Any claim older than
  `idempotency_in_flight_timeout_s` is taken over too (claims written before owners existed).
  The engine's checkout-id dedup keeps such a retry exactly-once.

Scope is the API key's id: two keys never see each other's answers. Requests that fail
validation never reach this module, so their 4xx is not stored (as Stripe does). Records are
kept `idempotency_retention_ms` (48 h by default; never less than 24 h).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from contextlib import suppress

import trio
from quart import Response

from engine.errors import DuplicateKey, StoreUnavailable
from engine.records import IdempotencyRecord
from engine.store.batching import batched_unit_of_work
from web.problems import (
    IDEMPOTENCY_KEY_IN_FLIGHT,
    IDEMPOTENCY_KEY_INVALID,
    IDEMPOTENCY_KEY_MISSING,
    IDEMPOTENCY_KEY_REUSED,
    ApiProblem,
)
from web.runtime import Runtime

#: Response headers kept with the answer and replayed.
STORED_HEADERS = ("Content-Type", "Location")
REPLAYED_HEADER = "Idempotent-Replayed"
#: A release is one small statement; past this the claim is left to the in-flight timeout.
RELEASE_TIMEOUT_S = 5.0


def check_key(header: str | None, length_max: int) -> str:
    if header is None or header == "":
        raise ApiProblem(
            IDEMPOTENCY_KEY_MISSING,
            "send an Idempotency-Key header (e.g. a UUID) so a retry cannot act twice",
        )
    if len(header) > length_max or not all(33 <= ord(c) < 127 for c in header):
        raise ApiProblem(
            IDEMPOTENCY_KEY_INVALID,
            f"the Idempotency-Key must be 1..{length_max} printable ASCII characters",
        )
    return header


def fingerprint(method: str, path: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


async def _claim(runtime: Runtime, record: IdempotencyRecord) -> IdempotencyRecord | None:
    """Claim the key for this process; None when claimed, else the record that holds it."""
    store = runtime.store
    try:
        async with batched_unit_of_work(store) as uow:
            await uow.begin_idempotent(record)
        return None
    except DuplicateKey:
        pass
    async with store.unit_of_work() as uow:
        existing = await uow.get_idempotency(record.scope, record.key)
    if existing is None:  # released meanwhile: try once more, a second loss is in flight
        try:
            async with store.unit_of_work() as uow:
                await uow.begin_idempotent(record)
            return None
        except DuplicateKey:
            return record
    if existing.completed or existing.fingerprint != record.fingerprint:
        return existing
    abandoned_before_ms = record.created_at_ms - int(
        runtime.settings.idempotency_in_flight_timeout_s * 1000
    )
    if existing.owner == record.owner and (record.scope, record.key) not in (
        runtime.claims_in_flight
    ):
        abandoned_before_ms = record.created_at_ms + 1  # ours, and no request of ours runs it
    if await store.take_over_idempotent(record, abandoned_before_ms):
        return None
    return existing


def _replay(record: IdempotencyRecord) -> Response:
    assert record.response_status is not None and record.response_body is not None
    response = Response(record.response_body, status=record.response_status)
    for name, value in (record.response_headers or {}).items():
        response.headers[name] = value
    response.headers[REPLAYED_HEADER] = "true"
    return response


async def run_idempotent(
    runtime: Runtime,
    scope: str,
    key: str,
    request_fingerprint: str,
    handler: Callable[[], Awaitable[Response]],
) -> Response:
    record = IdempotencyRecord(
        scope, key, request_fingerprint, runtime.clock.now_ms(), owner=runtime.incarnation
    )
    holder = await _claim(runtime, record)
    if holder is not None:
        if holder.fingerprint != request_fingerprint:
            raise ApiProblem(
                IDEMPOTENCY_KEY_REUSED,
                "this Idempotency-Key was first used with a different method, path or body",
            )
        if not holder.completed:
            raise ApiProblem(
                IDEMPOTENCY_KEY_IN_FLIGHT,
                "the first request with this Idempotency-Key is still running; retry later",
                headers={"Retry-After": "1"},
            )
        runtime.metrics.inc("idempotent_replays_total")
        return _replay(holder)
    runtime.claims_in_flight.add((scope, key))
    try:
        return await _run_claimed(runtime, scope, key, handler)
    finally:
        runtime.claims_in_flight.discard((scope, key))


async def _release(runtime: Runtime, scope: str, key: str) -> None:
    """Release the claim; in an outage it stays, and is taken over as one of ours that no
    request runs (or once our lease lapses), so a retry is never stuck on it."""
    with suppress(StoreUnavailable):
        async with runtime.store.unit_of_work() as uow:
            await uow.release_idempotent(scope, key)


async def _run_claimed(
    runtime: Runtime, scope: str, key: str, handler: Callable[[], Awaitable[Response]]
) -> Response:
    try:
        response = await handler()
    except BaseException:
        # Releasing must survive the request's cancellation (client gone, deadline).
        with trio.move_on_after(RELEASE_TIMEOUT_S, shield=True):
            await _release(runtime, scope, key)
        raise
    if response.status_code >= 500:
        await _release(runtime, scope, key)
        return response
    body = await response.get_data(as_text=False)
    assert isinstance(body, bytes)
    headers = {h: response.headers[h] for h in STORED_HEADERS if h in response.headers}
    async with batched_unit_of_work(runtime.store) as uow:
        await uow.complete_idempotent(scope, key, response.status_code, body, headers)
    return response
