"""Background purchases for the demo (`payengine demo --traffic 5/s`): buyers with carts for
several sellers who mostly pay, sometimes are declined, sometimes walk away, so the timeline,
the state machines and the ledger move while you watch. With `--faults NAME` the PSP misbehaves
as that scenario's fault plan says (psp/faults.py)."""

from __future__ import annotations

import random
import re
import secrets
from typing import Any

import trio

from actors.service import CreateCheckout, OrderLine, PaymentView

SELLERS = ("ceramics-studio", "linen-works", "tea-house", "print-shop", "bike-parts")
CURRENCY = "EUR"
#: How long a simulated buyer spends on the hosted page.
BUYER_THINK_S = 0.3
#: Outcome weights: pays, declined, walks away.
PAYS_P, DECLINED_P = 0.9, 0.05
#: The highest rate accepted, purchases per second.
RATE_PER_S_MAX = 200.0
#: Purchases in flight at most (a slow engine slows the traffic instead of piling it up).
IN_FLIGHT_MAX = 200

RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*s)?\s*$")


def parse_rate(text: str) -> float:
    """`"5/s"` or `"5"` -> 5.0; ValueError with a sentence otherwise."""
    found = RATE.match(text)
    if found is None:
        raise ValueError(f"--traffic must look like 5/s, got {text!r}")
    rate = float(found.group(1))
    if not 0 < rate <= RATE_PER_S_MAX:
        raise ValueError(f"--traffic must be within (0, {RATE_PER_S_MAX:g}] per second")
    return rate


async def _one(server: Any, rng: random.Random, limiter: trio.CapacityLimiter) -> None:
    async with limiter:
        engine = server.engine()
        if engine is None:  # restarting
            return
        sellers = rng.sample(SELLERS, rng.randint(1, 3))
        command = CreateCheckout(
            checkout_id="traffic-" + secrets.token_hex(8),
            buyer_id=f"buyer-{rng.randint(1, 500)}",
            currency=CURRENCY,
            orders=tuple(OrderLine(s, rng.randint(300, 12_000)) for s in sellers),
        )
        try:
            view = await engine.service.create_checkout(command)
        except Exception:  # an unavailable PSP or database: this buyer gives up
            return
        if not isinstance(view, PaymentView) or view.payment.psp_session_id is None:
            return
        await trio.sleep(BUYER_THINK_S)
        psp = server.psp()
        if psp is None:
            return
        draw = rng.random()
        if draw < PAYS_P:
            psp.buyer_pays(view.payment.psp_session_id)
        elif draw < PAYS_P + DECLINED_P:
            psp.buyer_declined(view.payment.psp_session_id)


async def run_traffic(server: Any, rate_per_s: float) -> None:
    """Start a purchase every 1/rate seconds until cancelled."""
    rng = random.Random()
    limiter = trio.CapacityLimiter(IN_FLIGHT_MAX)
    async with trio.open_nursery() as nursery:
        while True:
            nursery.start_soon(_one, server, rng, limiter)
            await trio.sleep(1.0 / rate_per_s)
