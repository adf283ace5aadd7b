"""Background purchases for the demo (`payengine demo --traffic 5/s`), in real time, so the
timeline, the state machines and the ledger move while you watch. With `--faults NAME` the PSP
misbehaves as that scenario's fault plan says (psp/faults.py).

The buyers are the simulator's (simulator/traffic.py `checkout_command`, with `DEMO_TRAFFIC`):
its cart shapes (one to three sellers, a few hot ones), currencies of 0, 2 and 3 decimals
(EUR, USD, JPY, BHD), log-uniform amounts, its double clicks (the same checkout twice at once)
and impatient clients (a first request given up on, then the same again), and its pay/decline
mix. The simulator's `Buyers` (simulator/world_buyers.py) itself is not run: it lives in the
simulated world (virtual time, the oracle's reply checks, the world's crash-aware requests) and
waits virtual hours for reviews. Like the Shop, these buyers reach the engine's PaymentService
in process, and the PSP's hosted page through the fake PSP's own buyer hooks.
"""

from __future__ import annotations

import random
import re
import secrets
from typing import Any

import attrs
import trio

from actors.service import PaymentView
from scenarios import Traffic
from simulator.traffic import checkout_command

#: The simulator's traffic shape the demo's buyers draw from (rates come from --traffic).
DEMO_TRAFFIC = Traffic(
    buyers=500,
    sellers=12,
    hot_sellers=3,
    hot_share=0.4,
    currencies={"EUR": 6, "USD": 2, "JPY": 1, "BHD": 1},
    amount_major_min=3,
    amount_major_max=120,
    double_click_p=0.03,
    impatient_retry_p=0.03,
)
#: How long a simulated buyer spends on the hosted page.
BUYER_THINK_S = 0.3
#: How long an impatient client waits for its first request before sending it again.
IMPATIENT_WAIT_S = 0.05
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


async def _checkout(engine: Any, command: Any, wait_s: float | None = None) -> Any:
    """One request of the buyer's client; None when it broke or was given up on."""
    with trio.move_on_after(wait_s if wait_s is not None else float("inf")):
        try:
            return await engine.service.create_checkout(command)
        except Exception:  # an unavailable PSP or database: this request is lost
            return None
    return None


async def _one(
    server: Any, seed: int, index: int, rng: random.Random, limiter: trio.CapacityLimiter
) -> None:
    async with limiter:
        engine = server.engine()
        if engine is None:  # restarting
            return
        tr = DEMO_TRAFFIC
        command = checkout_command(tr, seed, index, rng)
        # Unique per demo process: a database kept from an earlier demo has the earlier ids.
        command = attrs.evolve(command, checkout_id=f"traffic-{seed:08x}-{index:07d}")
        replies: list[Any] = []
        if rng.random() < tr.double_click_p:  # the same checkout twice at once

            async def send() -> None:
                replies.append(await _checkout(engine, command))

            async with trio.open_nursery() as both:
                both.start_soon(send)
                both.start_soon(send)
        else:
            if rng.random() < tr.impatient_retry_p:  # given up on, then sent again
                await _checkout(engine, command, IMPATIENT_WAIT_S)
                await trio.sleep(rng.uniform(0.1, 0.5))
            replies.append(await _checkout(engine, command))
        view = next((r for r in replies if isinstance(r, PaymentView)), None)
        if view is None or view.payment.psp_session_id is None:
            return
        await trio.sleep(BUYER_THINK_S)
        psp = server.psp()
        if psp is None:
            return
        draw = rng.random()
        if draw < tr.pay_p:
            psp.buyer_pays(view.payment.psp_session_id)
        elif draw < tr.pay_p + tr.decline_p:
            psp.buyer_declined(view.payment.psp_session_id)


async def run_traffic(server: Any, rate_per_s: float) -> None:
    """Start a purchase every 1/rate seconds until cancelled."""
    seed = secrets.randbits(32)
    rng = random.Random(seed)
    limiter = trio.CapacityLimiter(IN_FLIGHT_MAX)
    index = 0
    async with trio.open_nursery() as nursery:
        while True:
            nursery.start_soon(_one, server, seed, index, rng, limiter)
            index += 1
            await trio.sleep(1.0 / rate_per_s)
