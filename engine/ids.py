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

PREFIXES = frozenset(
    {"pay", "ord", "txn", "msg", "evt", "po", "re", "tok", "cs", "cap", "key", "inc"}
)


#: Every pair of Crockford characters, indexed by the 10 bits they encode: encoding takes one
#: lookup per two characters instead of a divmod per character (ids are made on every commit).
_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)


#: The shifts of the 13 pairs of an id's 26 characters (130 bits), most significant first.
_ID_SHIFTS = tuple(range(120, -1, -10))


def _encode(value: int, length: int) -> str:
    """`value` in `length` Crockford base32 characters, most significant first."""
    assert length % 2 == 0 and 0 <= value < 1 << (5 * length)
    return "".join([_PAIRS[(value >> shift) & 0x3FF] for shift in range(5 * length - 10, -1, -10)])


def _encode_id(now_ms: int, random_part: int) -> str:
    """The 26 characters of an id: `_encode(now_ms, 10) + _encode(random_part, 16)`, faster."""
    value = (now_ms << _RANDOM_BITS) | random_part
    return "".join([_PAIRS[(value >> shift) & 0x3FF] for shift in _ID_SHIFTS])


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
        assert 0 <= now_ms < 1 << 50
        return f"{prefix}_{_encode_id(now_ms, self._last_random)}"


def first_id_at(prefix: str, now_ms: int) -> str:
    """The smallest id `prefix` can have at `now_ms`: a paging cursor that skips what is older
    (reconciliation pages the ledger from a window's start)."""
    assert prefix in PREFIXES and 0 <= now_ms < 1 << 50, (prefix, now_ms)
    return f"{prefix}_{_encode_id(now_ms, 0)}"
