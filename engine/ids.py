"""Sortable ids from an injected clock and rng, so a seeded run produces the same ids.

Format: `<prefix>_<26 chars>`, the 26 characters a ULID (48-bit millisecond timestamp, 80 random
bits, Crockford base32). Ids made within one millisecond are strictly increasing (the random
part is incremented, as the ULID spec's monotonic mode), so sorting by id sorts by creation.
The payment order id doubles as the PSP idempotency key.
"""

from __future__ import annotations

import re

from engine.ports import Clock, Rng

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS = 80
_ID_RE = re.compile(r"^[a-z]{2,8}_[0-9A-HJKMNP-TV-Z]{26}$")

PREFIXES = frozenset({"pay", "ord", "txn", "msg", "evt", "po", "re", "tok", "cs", "cap", "key"})


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, index = divmod(value, 32)
        chars.append(_CROCKFORD[index])
    assert value == 0
    return "".join(reversed(chars))


def is_id(text: str, prefix: str | None = None) -> bool:
    if not _ID_RE.match(text):
        return False
    return prefix is None or text.startswith(prefix + "_")


class Ids:
    """The id provider. One per process (or per simulated world)."""

    def __init__(self, clock: Clock, rng: Rng) -> None:
        self._clock = clock
        self._rng = rng
        self._last_ms = -1
        self._last_random = 0

    def new(self, prefix: str) -> str:
        assert prefix in PREFIXES, f"unknown id prefix {prefix!r}"
        now_ms = max(self._clock.now_ms(), self._last_ms)
        if now_ms == self._last_ms:
            self._last_random = (self._last_random + 1) % (1 << _RANDOM_BITS)
        else:
            self._last_random = self._rng.getrandbits(_RANDOM_BITS - 1)  # headroom to increment
        self._last_ms = now_ms
        return f"{prefix}_{_encode(now_ms, 10)}{_encode(self._last_random, 16)}"
