"""Stripe-style webhook signatures: the fake PSP signs, the endpoint verifies."""

from __future__ import annotations

import pytest

from simulator.signing import SignatureInvalid, sign_webhook, verify_webhook

SECRET = b"whsec_test"
BODY = b'{"id":"evt_1","type":"capture.succeeded"}'


def test_a_signed_body_verifies() -> None:
    header = sign_webhook(SECRET, 1_000, BODY)
    assert header.startswith("t=1000,v1=")
    assert verify_webhook(SECRET, header, BODY, now_s=1_010) == 1_000


@pytest.mark.parametrize(
    ("secret", "body", "now_s"),
    [
        (b"whsec_guessed", BODY, 1_000),  # forged: the wrong secret
        (SECRET, BODY.replace(b"succeeded", b"failed"), 1_000),  # body altered after signing
        (SECRET, BODY, 1_000 + 301),  # replayed too late
    ],
)
def test_forged_altered_or_stale_webhooks_are_refused(
    secret: bytes, body: bytes, now_s: int
) -> None:
    header = sign_webhook(secret, 1_000, BODY)
    with pytest.raises(SignatureInvalid):
        verify_webhook(SECRET, header, body, now_s=now_s)


@pytest.mark.parametrize("header", [None, "", "garbage", "t=abc,v1=00", "v1=00", "t=1000"])
def test_malformed_headers_are_refused(header: str | None) -> None:
    with pytest.raises(SignatureInvalid):
        verify_webhook(SECRET, header, BODY, now_s=1_000)
