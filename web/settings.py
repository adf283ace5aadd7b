"""Every limit and timeout of the HTTP layer, with its unit last, in one place.

The engine's own limits live in engine/limits.py; these are the API's: request sizes, pages,
rate limits, idempotency retention, webhook tolerance. `WebSettings.check()` asserts the
relations between them, so a bad deployment fails at start, not on the first request.
"""

from __future__ import annotations

import attrs

from engine.errors import InvalidInput

#: One day in milliseconds: the minimum the IETF Idempotency-Key draft asks us to keep a key.
DAY_MS = 24 * 3600 * 1000


@attrs.frozen
class WebSettings:
    # --- requests ------------------------------------------------------------------------------
    #: A larger body is refused with 413 before it is read in full (Quart's MAX_CONTENT_LENGTH).
    body_size_max_bytes: int = 64 * 1024
    page_size_default: int = 20
    page_size_max: int = 100
    #: How long POST /v1/payments waits for the PSP registration before answering with the
    #: payment as it stands (status created); the engine keeps registering in the background.
    register_timeout_s: float = 5.0
    #: The whole request's deadline for calls into the engine; past it the answer is 503.
    engine_call_timeout_s: float = 15.0

    # --- rate limiting (per API key, token bucket) -------------------------------------------
    rate_limit_per_s: float = 200.0
    rate_limit_burst_max: int = 400
    #: Buckets kept for distinct keys; the least recently used is forgotten beyond it.
    rate_limit_keys_max: int = 10_000

    # --- idempotency ---------------------------------------------------------------------------
    #: Keys are kept at least this long (purged after it): 48 h, twice the draft's minimum.
    idempotency_retention_ms: int = 2 * DAY_MS
    #: An in-flight claim older than this is presumed abandoned (its process died mid-request)
    #: and may be taken over; the engine's checkout-id dedup keeps the retry exactly-once.
    idempotency_in_flight_timeout_s: float = 60.0
    idempotency_key_length_max: int = 255
    #: A process holds a lease in the database, renewed every heartbeat; its in-flight claims
    #: die with it: once its lease lapses (killed), a retry takes the claim over at once
    #: instead of after the in-flight timeout. The lease must outlast a few missed heartbeats,
    #: and more than the clock skew between the processes' machines.
    process_lease_s: float = 3.0
    process_heartbeat_interval_s: float = 1.0
    #: How often the lifespan purges expired idempotency records.
    idempotency_purge_interval_s: float = 3600.0

    # --- PSP webhooks --------------------------------------------------------------------------
    #: Every secret currently accepted (rotation: old and new together).
    psp_webhook_secrets: tuple[str, ...] = ()
    psp_signature_tolerance_s: int = 300

    # --- where buyers are sent ---------------------------------------------------------------
    public_base_url: str = "http://127.0.0.1:8000"

    def check(self) -> WebSettings:
        """Raise InvalidInput naming the first broken relation between limits."""
        for field in attrs.fields(WebSettings):
            value = getattr(self, field.name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value <= 0:
                raise InvalidInput(f"web setting {field.name} must be positive, got {value!r}")
        if self.page_size_default > self.page_size_max:
            raise InvalidInput("web setting page_size_default must not exceed page_size_max")
        if self.idempotency_retention_ms < DAY_MS:
            raise InvalidInput("web setting idempotency_retention_ms must be at least 24 h")
        if self.rate_limit_burst_max < 1:
            raise InvalidInput("web setting rate_limit_burst_max must be at least 1")
        if self.process_lease_s < 2 * self.process_heartbeat_interval_s:
            raise InvalidInput(
                "web setting process_lease_s must be at least twice process_heartbeat_interval_s"
            )
        if self.register_timeout_s > self.engine_call_timeout_s:
            raise InvalidInput("web setting register_timeout_s must not exceed the call deadline")
        return self
