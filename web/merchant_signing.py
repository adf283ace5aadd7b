"""Standard Webhooks signatures for the notifications we send to merchants.

The scheme (https://www.standardwebhooks.com, the one Svix popularised): the secret is
`whsec_<base64 of 24..64 random bytes>`; the signed content is `{webhook-id}.{webhook-timestamp}.
{body}`; the signature is `v1,<base64 HMAC-SHA256(key, content)>` where key is the decoded
secret. Headers: `webhook-id` (the outbox message id: the same on every retry, so a receiver
deduplicates on it), `webhook-timestamp` (unix seconds of this attempt) and `webhook-signature`
(space-separated signatures; several during a secret rotation).

Pure apart from `new_secret`, which draws from the operating system's CSPRNG. `verify` is
what a merchant (and our tests) run; it is constant-time and bounds the clock skew.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"
#: Random bytes in a new secret (Standard Webhooks asks for 24..64).
SECRET_RANDOM_BYTES = 32
#: How far a timestamp may be from the verifier's clock, either way.
TOLERANCE_S = 300
#: The most signatures a header may carry that `verify` will look at.
SIGNATURES_PER_HEADER_MAX = 10


class SignatureError(ValueError):
    """A notification whose headers do not prove it came from us, unaltered and recently."""


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_RANDOM_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_...` secret (the prefix is optional, as in the reference)."""
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a webhook secret is whsec_ followed by base64") from exc


def sign(secret: str, msg_id: str, timestamp_s: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256(key, f"{msg_id}.{timestamp_s}.{body}")>`."""
    content = f"{msg_id}.{timestamp_s}.".encode() + body
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, msg_id: str, timestamp_s: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp_s),
        "webhook-signature": sign(secret, msg_id, timestamp_s, body),
    }


def verify(secret: str, headers: dict[str, str], body: bytes, now_s: int) -> None:
    """Raise SignatureError unless `headers` carry a valid v1 signature of `body`, made within
    `TOLERANCE_S` of `now_s`. Header names are matched case-insensitively."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id = lower.get("webhook-id")
    timestamp = lower.get("webhook-timestamp")
    signatures = lower.get("webhook-signature")
    if not msg_id or not timestamp or not signatures:
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
    if not timestamp.isdigit():
        raise SignatureError("webhook-timestamp is not unix seconds")
    timestamp_s = int(timestamp)
    if abs(now_s - timestamp_s) > TOLERANCE_S:
        raise SignatureError("webhook-timestamp is outside the tolerance")
    expected = sign(secret, msg_id, timestamp_s, body).encode()
    for candidate in signatures.split(" ")[:SIGNATURES_PER_HEADER_MAX]:
        if candidate.startswith("v1,") and hmac.compare_digest(candidate.encode(), expected):
            return
    raise SignatureError("no webhook-signature matches")
