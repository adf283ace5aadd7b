"""What a simulated remote call does before it acts, shared by the fake PSP and the fake
payout provider: the latency the fault plan draws, then a 503 or a hang when it says so.

One place, so both fakes misbehave the same way and a new fault lands in both.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from engine.gateway import GatewayUnavailable


async def before_answer(
    latency: Callable[[str], float] | None,
    operation: str,
    *,
    unavailable: bool,
    hang: bool,
    hang_s: float,
    who: str,
) -> None:
    """Sleep the drawn latency; then raise `GatewayUnavailable` for a 503 at once, or for a
    hang after `hang_s` (the caller's own deadline fires first)."""
    if latency is not None:
        delay_s = latency(operation)
        if delay_s > 0:
            await trio.sleep(delay_s)
    if unavailable:
        await trio.lowlevel.checkpoint()
        raise GatewayUnavailable(f"{who} answered 503")
    if hang:
        await trio.sleep(hang_s)
        raise GatewayUnavailable(f"{who} never answered")
