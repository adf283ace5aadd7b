"""The traffic generator's pure part: arrival rates and the carts buyers check out.

Pure functions of the scenario's traffic settings and a seeded rng, so a seed replays the same
buyers, sellers, currencies and amounts (amounts log-uniform between the scenario's bounds,
in whole minor units of each currency's ISO 4217 exponent; a share of orders goes to a few hot
sellers). The world (simulator/world.py) decides when they arrive and sends them.
"""

from __future__ import annotations

import math
import random

from actors.service import CreateCheckout, OrderLine
from engine.money import currency_exponent
from scenarios import Traffic


def rate_at(traffic: Traffic, t_s: float) -> float:
    """Checkouts per virtual second at `t_s` into the run (the burst multiplies the base rate)."""
    if traffic.burst_start_s <= t_s < traffic.burst_end_s:
        return traffic.rate_per_s * traffic.burst_factor
    return traffic.rate_per_s


def checkout_command(traffic: Traffic, seed: int, index: int, rng: random.Random) -> CreateCheckout:
    """The `index`-th buyer's checkout: a cart of 1..orders_per_cart_max distinct sellers."""
    tr = traffic
    currencies = sorted(tr.currencies)
    currency = rng.choices(currencies, weights=[tr.currencies[c] for c in currencies])[0]
    exponent = currency_exponent(currency)
    cart = rng.randint(1, tr.orders_per_cart_max)
    sellers: list[int] = []
    while len(sellers) < cart:
        if tr.hot_sellers and rng.random() < tr.hot_share:
            seller = rng.randrange(tr.hot_sellers)
        else:
            seller = rng.randrange(tr.sellers)
        if seller not in sellers:
            sellers.append(seller)
    low = math.log(tr.amount_major_min * 10**exponent)
    high = math.log(tr.amount_major_max * 10**exponent)
    lines = tuple(
        OrderLine(f"seller-{s:04d}", max(1, int(math.exp(rng.uniform(low, high))))) for s in sellers
    )
    return CreateCheckout(
        checkout_id=f"chk-{seed}-{index:07d}",
        buyer_id=f"buyer-{rng.randrange(tr.buyers):05d}",
        currency=currency,
        orders=lines,
        return_url="https://shop.example/return",
    )
