"""Risk rules: pure functions that say whether a checkout may proceed, and why not.

Pluggable: a rule is any callable `(CheckoutFacts) -> str | None` returning a rejection reason
(a sentence-named value such as `amount_exceeds_limit`) or None. `default_rules(config)` builds
the three rules the engine ships with: an amount limit, blocked sellers and buyer velocity.
Velocity needs history, so the caller passes the buyer's recent checkout count in the facts;
the service keeps that count in a bounded window (see actors/service.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs

from engine.limits import EngineConfig


@attrs.frozen
class CheckoutFacts:
    buyer_id: str
    currency: str
    amount_minor: int
    seller_ids: tuple[str, ...]
    recent_checkouts_by_buyer: int


RiskRule = Callable[[CheckoutFacts], "str | None"]


def amount_limit(limit_minor: int) -> RiskRule:
    def rule(facts: CheckoutFacts) -> str | None:
        return "amount_exceeds_limit" if facts.amount_minor > limit_minor else None

    return rule


def blocked_sellers(blocked: frozenset[str]) -> RiskRule:
    def rule(facts: CheckoutFacts) -> str | None:
        return "seller_blocked" if blocked.intersection(facts.seller_ids) else None

    return rule


def velocity(checkouts_max: int) -> RiskRule:
    def rule(facts: CheckoutFacts) -> str | None:
        return (
            "buyer_velocity_exceeded" if facts.recent_checkouts_by_buyer >= checkouts_max else None
        )

    return rule


def default_rules(config: EngineConfig) -> tuple[RiskRule, ...]:
    return (
        amount_limit(config.risk_amount_minor_max),
        blocked_sellers(config.blocked_sellers),
        velocity(config.risk_velocity_checkouts_max),
    )


def assess(rules: Sequence[RiskRule], facts: CheckoutFacts) -> str | None:
    """The first rejection reason, or None when every rule lets the checkout through."""
    for rule in rules:
        reason = rule(facts)
        if reason is not None:
            return reason
    return None
