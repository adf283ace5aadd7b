"""API keys with scopes: who is calling, and may they do this?

Keys travel as `Authorization: Bearer pek_...`. The store keeps only the key's SHA-256 (see
engine/access.py for why that hash is the right one), looked up on each request through a
small cache so the hot path costs no database read; a revocation takes effect within
`KEY_CACHE_TTL_S`. Scopes: `storefront` creates and reads payments; `merchant:<id>` reads that
merchant's balance only; `admin` reads the ledger, dead letters, payments and balances, and
replays dead letters. Missing or unknown key: 401; known key, wrong scope: 403.

`guarded(...)` also applies the per-key rate limit, before the handler (and so before
idempotency) runs: a 429 is never stored as a key's answer.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from quart import g, request

from engine.access import ApiKey, hash_key
from web.problems import FORBIDDEN, RATE_LIMITED, UNAUTHENTICATED, ApiProblem
from web.runtime import Runtime, current

#: How long a looked-up key is trusted without reading the store again.
KEY_CACHE_TTL_S = 5.0
KEY_CACHE_SIZE_MAX = 10_000
#: A bearer token longer than this is refused unhashed.
KEY_TEXT_LENGTH_MAX = 200

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


async def _lookup(runtime: Runtime, key_text: str) -> ApiKey | None:
    key_hash = hash_key(key_text)
    now_s = runtime.clock.monotonic()
    _cache = runtime.key_cache
    cached = _cache.get(key_hash)
    if cached is not None and now_s - cached[0] < KEY_CACHE_TTL_S:
        return cached[1]
    found = await runtime.store.get_api_key(key_hash)
    _cache[key_hash] = (now_s, found)
    _cache.move_to_end(key_hash)
    while len(_cache) > KEY_CACHE_SIZE_MAX:
        _cache.popitem(last=False)
    return found


async def authenticate(runtime: Runtime) -> ApiKey:
    header = request.headers.get("Authorization", "")
    scheme, _, key_text = header.partition(" ")
    if scheme.lower() != "bearer" or not key_text or len(key_text) > KEY_TEXT_LENGTH_MAX:
        raise ApiProblem(
            UNAUTHENTICATED,
            "send an API key as 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": 'Bearer realm="payengine"'},
        )
    key = await _lookup(runtime, key_text.strip())
    if key is None or not key.active:
        raise ApiProblem(
            UNAUTHENTICATED,
            "the API key is unknown or revoked",
            headers={"WWW-Authenticate": 'Bearer realm="payengine", error="invalid_token"'},
        )
    return key


def allowed(key: ApiKey, scopes: tuple[str, ...], merchant_id: str | None = None) -> bool:
    """`merchant`: the key of the route's merchant; `any_merchant`: any merchant's key, for a
    route naming no merchant whose handler filters what that key may see (refunds)."""
    if key.scope in scopes:
        return True
    if "any_merchant" in scopes and key.merchant_id is not None:
        return True
    return "merchant" in scopes and merchant_id is not None and key.merchant_id == merchant_id


def guarded(*scopes: str) -> Callable[[F], F]:
    """Authenticate, check the scope (`merchant` means the key's own merchant id, taken from
    the route's `merchant_id`), then rate-limit per key."""

    def decorate(handler: F) -> F:
        @functools.wraps(handler)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            runtime = current()
            key = await authenticate(runtime)
            if not allowed(key, scopes, kwargs.get("merchant_id")):
                raise ApiProblem(FORBIDDEN, f"a {key.scope.split(':')[0]} key may not do this")
            wait_s = runtime.limiter.take(key.key_id, runtime.clock.monotonic())
            if wait_s > 0:
                runtime.metrics.inc("rate_limited_total")
                raise ApiProblem(
                    RATE_LIMITED,
                    "this API key is over its request rate; retry after the given seconds",
                    headers={"Retry-After": runtime.limiter.retry_after_header(wait_s)},
                )
            g.api_key = key
            return await handler(*args, **kwargs)

        return cast(F, wrapper)

    return decorate
