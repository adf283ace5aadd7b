"""Records for who may call the API and where merchants want to hear from us.

Why here and not in web/: both stores keep these rows with the same unit-of-work semantics as
payments, and the conformance suite checks them, so the records belong to the core. Key
generation (which needs a CSPRNG) stays in web/: the core never reaches for randomness.

An API key is stored only as the SHA-256 of the key text. The key carries 256 random bits, so a
fast unsalted hash is safe against guessing (there is nothing to brute-force) and keeps the
lookup a single indexed read on every request; a slow password hash would only buy latency.
"""

from __future__ import annotations

import hashlib
import re

import attrs

#: The longest merchant id a scope may name, as for other external ids.
SCOPE_MERCHANT_ID_LENGTH_MAX = 128
#: The longest webhook URL a merchant may register, in characters.
WEBHOOK_URL_LENGTH_MAX = 2048

_MERCHANT_SCOPE_RE = re.compile(r"^merchant:[A-Za-z0-9._~-]{1,128}$")
_HASH_RE = re.compile(r"^[0-9a-f]{64}$")


def check_scope(scope: str) -> str:
    """Return `scope` when it is `storefront`, `admin` or `merchant:<id>`; raise otherwise."""
    if scope in ("storefront", "admin") or _MERCHANT_SCOPE_RE.match(scope):
        return scope
    raise ValueError(f"scope must be storefront, admin or merchant:<id>, got {scope!r}")


def hash_key(key_text: str) -> str:
    """The stored form of an API key (see the module docstring for why SHA-256 suffices)."""
    return hashlib.sha256(key_text.encode("utf-8")).hexdigest()


def _scope(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    check_scope(value)


def _sha256_hex(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not _HASH_RE.match(value):
        raise ValueError(f"{attribute.name} must be 64 lowercase hex digits, got {value!r}")


def _url(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if (
        not isinstance(value, str)
        or len(value) > WEBHOOK_URL_LENGTH_MAX
        or not value.startswith(("https://", "http://"))
    ):
        raise ValueError(f"{attribute.name} must be an http(s) URL, got {value!r}")


@attrs.frozen
class ApiKey:
    """An API key as stored: its public id, the hash of its text, and what it may do."""

    key_id: str
    key_hash: str = attrs.field(validator=_sha256_hex)
    scope: str = attrs.field(validator=_scope)
    created_at_ms: int
    label: str = ""
    revoked_at_ms: int | None = None

    @property
    def merchant_id(self) -> str | None:
        return self.scope.split(":", 1)[1] if self.scope.startswith("merchant:") else None

    @property
    def active(self) -> bool:
        return self.revoked_at_ms is None


@attrs.frozen
class WebhookEndpoint:
    """Where a merchant receives signed notifications (Standard Webhooks).

    `secret` is kept in clear because we must sign with it; it is shown to the merchant once.
    """

    merchant_id: str
    url: str = attrs.field(validator=_url)
    secret: str
    created_at_ms: int
    enabled: bool = True
