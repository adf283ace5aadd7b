"""Stripe-style webhook signatures: `Stripe-Signature: t=<unix s>,v1=<hex>[,v1=<hex>...]`.

v1 is HMAC-SHA256(secret, f"{t}.{body}") in lowercase hex. Why this scheme: it is what the
largest PSPs use, and the official `stripe` library verifies it, so our fake PSP's signatures
are checked by independent code (tests/web). Verification accepts any of our current secrets
against any v1 in the header (rotation on either side), compares in constant time, and refuses
a timestamp more than the tolerance away from now (replay window), in either direction.

Pure functions: the caller passes the time, so tests run on a virtual clock.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

#: Stripe's default replay window.
SIGNATURE_TOLERANCE_S = 300
#: A header longer than this is refused unparsed (a v1 is 64 hex chars; rotation adds a few).
SIGNATURE_HEADER_LENGTH_MAX = 1024


class SignatureError(Exception):
    """The signature is missing, malformed, stale, or matches none of our secrets."""


def compute(secret: str, timestamp_s: int, body: bytes) -> str:
    signed = str(timestamp_s).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def sign_header(secrets: Sequence[str], timestamp_s: int, body: bytes) -> str:
    """The header a PSP sends: one v1 per secret it is signing with (several while rotating)."""
    parts = [f"t={timestamp_s}"] + [f"v1={compute(s, timestamp_s, body)}" for s in secrets]
    return ",".join(parts)


def verify(
    header: str | None,
    body: bytes,
    secrets: Sequence[str],
    now_s: int,
    tolerance_s: int = SIGNATURE_TOLERANCE_S,
) -> int:
    """Return the signed timestamp when some v1 matches some secret; raise SignatureError."""
    if not header:
        raise SignatureError("the Stripe-Signature header is missing")
    if len(header) > SIGNATURE_HEADER_LENGTH_MAX:
        raise SignatureError("the Stripe-Signature header is too long")
    if not secrets:
        raise SignatureError("no webhook secret is configured")
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t" and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif name == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError("the Stripe-Signature header needs t=<seconds> and v1=<hex>")
    if abs(now_s - timestamp) > tolerance_s:
        raise SignatureError(f"the signature timestamp is outside the {tolerance_s} s tolerance")
    for secret in secrets:
        expected = compute(secret, timestamp, body)
        for candidate in candidates:
            if hmac.compare_digest(expected, candidate):
                return timestamp
    raise SignatureError("no v1 signature matches a current secret")
