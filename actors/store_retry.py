"""`when_store_answers`: call the store again, with backoff, for as long as it is unavailable.

Why: an outage of the database is weather, not death (issue 14). A long-lived task whose call
finds the store unreachable (`StoreUnavailable`) must wait for it to come back instead of
raising into the engine's nursery, which would end the engine while the process lives on.
The actor runtime does the same for reloads and messages (actors/runtime.py); this is for the
other tasks: recovery, the web layer's heartbeat and purge. Other errors propagate.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from engine.errors import StoreUnavailable
from engine.limits import EngineConfig, store_retry_delay_s

log = logging.getLogger("payengine.store_retry")

T = TypeVar("T")


async def when_store_answers(
    config: EngineConfig, what: str, call: Callable[[], Awaitable[T]]
) -> T:
    """`await call()`, retried after `store_retry_delay_s` while it raises StoreUnavailable."""
    attempt = 0
    while True:
        try:
            return await call()
        except StoreUnavailable as exc:
            attempt += 1
            if attempt == 1:
                log.warning("%s waits for the store: %s", what, exc)
            await trio.sleep(store_retry_delay_s(config, attempt))
