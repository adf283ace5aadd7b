"""Stripe-style webhook signatures: `Stripe-Signature: t=<unix s>,v1=<hex HMAC-SHA256>`.

The PSP signs `"<t>.<body>"` with the endpoint's secret; the receiver recomputes the HMAC over
the exact bytes it received, compares in constant time, and refuses a timestamp outside its
tolerance (a replayed old event). The fake PSP signs with `sign_webhook`; the world's webhook
endpoint (and later the web layer) verifies with `verify_webhook`. Pure functions: no clock is
read here, the caller passes the current time.
"""

from __future__ import annotations

import hashlib
import hmac

#: How far a signature's timestamp may be from the receiver's clock (Stripe's default).
SIGNATURE_TOLERANCE_S = 300
#: The longest signature header we parse; anything longer is refused unread.
SIGNATURE_HEADER_LENGTH_MAX = 1024


class SignatureInvalid(Exception):
    """The webhook's signature header is missing, malformed, stale or does not match."""


def _mac(secret: bytes, timestamp_s: int, body: bytes) -> str:
    return hmac.new(secret, f"{timestamp_s}.".encode() + body, hashlib.sha256).hexdigest()


def sign_webhook(secret: bytes, timestamp_s: int, body: bytes) -> str:
    """The signature header value for `body` sent at `timestamp_s`."""
    return f"t={timestamp_s},v1={_mac(secret, timestamp_s, body)}"


def verify_webhook(
    secret: bytes,
    header: str | None,
    body: bytes,
    now_s: int,
    tolerance_s: int = SIGNATURE_TOLERANCE_S,
) -> int:
    """Return the signed timestamp if `header` is a valid signature of `body`; else raise."""
    if not header or len(header) > SIGNATURE_HEADER_LENGTH_MAX:
        raise SignatureInvalid("missing or oversized signature header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureInvalid(f"malformed signature element {part!r}")
        if name == "t":
            if not value.isdigit():
                raise SignatureInvalid("signature timestamp is not an integer")
            timestamp = int(value)
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureInvalid("signature header needs t= and v1=")
    if abs(now_s - timestamp) > tolerance_s:
        raise SignatureInvalid(f"signature timestamp is {now_s - timestamp} s away from now")
    expected = _mac(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise SignatureInvalid("signature does not match the body")
    return timestamp
