"""Per-API-key rate limiting: a token bucket per key, in memory, bounded in keys.

Why our own and not quart-rate-limiter: that extension is built on asyncio-era assumptions and
a store abstraction we do not need; a token bucket is a dozen lines, runs on the injected clock
(so tests run in virtual time), and is checked in `before_request`, ahead of idempotency, so a
429 is never stored as an Idempotency-Key's answer. Limits are per process: behind a load
balancer with N processes a key gets up to N times the rate (documented in docs/api.md).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import attrs


@attrs.define
class _Bucket:
    tokens: float
    at_s: float


class TokenBuckets:
    def __init__(self, rate_per_s: float, burst_max: int, keys_max: int) -> None:
        assert rate_per_s > 0 and burst_max >= 1 and keys_max >= 1
        self._rate_per_s = rate_per_s
        self._burst_max = burst_max
        self._keys_max = keys_max
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str, now_s: float) -> float:
        """Take one token; 0.0 when allowed, else the seconds until a token is available."""
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            bucket = _Bucket(float(self._burst_max), now_s)
        elapsed_s = max(0.0, now_s - bucket.at_s)
        bucket.tokens = min(float(self._burst_max), bucket.tokens + elapsed_s * self._rate_per_s)
        bucket.at_s = now_s
        self._buckets[key] = bucket
        while len(self._buckets) > self._keys_max:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self._rate_per_s

    @staticmethod
    def retry_after_header(wait_s: float) -> str:
        """Retry-After in whole seconds, rounded up, at least 1."""
        return str(max(1, math.ceil(wait_s)))

    def statistics(self) -> dict[str, int]:
        return {"keys_tracked": len(self._buckets)}
