"""Stripe's `Idempotency-Key` semantics for the fake PSP's POST endpoints.

Why: a Stripe client retries a POST with the same key after a timeout and relies on getting
the first answer back, not a second effect. As Stripe does: keys are scoped to the API key; the
first request's status and body are saved once the endpoint has executed (a refusal of
malformed parameters or a 503 before the PSP acted is not saved, so a corrected retry runs) and
replayed, with `Idempotent-Replayed: true`, for the same key and the same parameters; the same
key with other parameters is a 400 `idempotency_error`; a second request while the first is
still running is a 409. Keys expire after `idempotency_key_ttl_s` (24 h) and the cache keeps at
most `idempotency_keys_max` of them (oldest first out), so it never grows without bound.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import attrs

from psp.wire import StripeError

#: How long a saved answer is replayed (Stripe's 24 hours).
IDEMPOTENCY_KEY_TTL_S = 24 * 3600.0
#: The most saved answers kept; the oldest go first.
IDEMPOTENCY_KEYS_MAX = 100_000
#: Stripe refuses longer keys.
IDEMPOTENCY_KEY_LENGTH_MAX = 255


@attrs.frozen
class Saved:
    fingerprint: str
    status: int
    body: bytes
    saved_at_s: float


@attrs.define(eq=False)
class IdempotencyCache:
    now_s: Callable[[], float]
    ttl_s: float = IDEMPOTENCY_KEY_TTL_S
    keys_max: int = IDEMPOTENCY_KEYS_MAX
    _saved: OrderedDict[tuple[str, str], Saved] = attrs.field(factory=OrderedDict, init=False)
    _running: dict[tuple[str, str], str] = attrs.field(factory=dict, init=False)

    def begin(self, scope: str, key: str, fingerprint: str) -> Saved | None:
        """The saved answer to replay, or None after marking the key as running (then call
        `finish` or `abandon`). Raises StripeError for a reused key or one still running."""
        if len(key) > IDEMPOTENCY_KEY_LENGTH_MAX:
            raise StripeError(
                400,
                f"Idempotency-Key may be at most {IDEMPOTENCY_KEY_LENGTH_MAX} characters",
                type="idempotency_error",
            )
        self._expire()
        slot = (scope, key)
        saved = self._saved.get(slot)
        running = self._running.get(slot)
        if (saved is not None and saved.fingerprint != fingerprint) or (
            running is not None and running != fingerprint
        ):
            raise StripeError(
                400,
                "Keys for idempotent requests can only be used with the same parameters they "
                f"were first used with. Try using a key other than '{key}' if you meant to "
                "execute a different request.",
                type="idempotency_error",
            )
        if saved is not None:
            return saved
        if running is not None:
            raise StripeError(
                409,
                "There is currently another in-progress request using this Stripe token "
                "(probably an Idempotency-Key); please retry later.",
                code="lock_timeout",
                type="idempotency_error",
            )
        self._running[slot] = fingerprint
        return None

    def finish(self, scope: str, key: str, status: int, body: bytes) -> None:
        slot = (scope, key)
        fingerprint = self._running.pop(slot)
        self._saved[slot] = Saved(fingerprint, status, body, self.now_s())
        while len(self._saved) > self.keys_max:
            self._saved.popitem(last=False)

    def abandon(self, scope: str, key: str) -> None:
        """The endpoint did not execute (bad parameters, a 503 before acting): save nothing."""
        self._running.pop((scope, key), None)

    def _expire(self) -> None:
        horizon_s = self.now_s() - self.ttl_s
        while self._saved:
            slot, oldest = next(iter(self._saved.items()))
            if oldest.saved_at_s >= horizon_s:
                return
            del self._saved[slot]

    def statistics(self) -> dict[str, Any]:
        return {"saved": len(self._saved), "running": len(self._running)}
