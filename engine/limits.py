"""Every limit on something that grows, and every timeout, in one place (TIGER_STYLE).

Names put the unit last (`capture_timeout_s`, `mailbox_capacity_max`). `EngineConfig` carries
the defaults; a deployment overrides them from the environment or a TOML file
(payengine/config.py). `EngineConfig.check()` asserts the relations between limits.
"""

from __future__ import annotations

import attrs

from engine.errors import InvalidInput


@attrs.frozen
class EngineConfig:
    # --- actors -------------------------------------------------------------------------------
    mailbox_capacity_max: int = 64
    ask_timeout_s: float = 10.0
    actor_idle_timeout_s: float = 30.0
    actors_max: int = 100_000
    restarts_per_window_max: int = 5
    restart_window_s: float = 60.0
    shutdown_timeout_s: float = 5.0
    recovery_batch_size_max: int = 500
    #: While the store is unavailable (an outage: StoreUnavailable), an actor's reload, the
    #: message it was handling and recovery wait and retry, the delay doubling from the base to
    #: the cap; they never give up while the store is down (outages are weather, not death).
    #: The cap bounds how long after the store is back work resumes.
    store_retry_delay_s_base: float = 0.05
    store_retry_delay_s_max: float = 2.0

    # --- checkout ----------------------------------------------------------------------------
    checkout_expiry_s: float = 30 * 60.0
    orders_per_checkout_max: int = 50
    commission_bps: int = 1000  # 10%

    # --- PSP calls ---------------------------------------------------------------------------
    psp_call_timeout_s: float = 10.0
    retry_delay_s_base: float = 1.0
    retry_delay_factor: float = 2.0
    retry_delay_s_max: float = 300.0
    retry_jitter_ratio: float = 0.2
    capture_attempts_max: int = 12
    #: After this many unanswered status queries the order waits for a webhook or reconciliation,
    #: polling at the retry cap; it never turns FAILED on silence.
    status_poll_interval_s: float = 60.0
    register_attempts_max: int = 8
    #: Unknown refund outcomes (timeouts) retried under the same key before the refund only
    #: asks the PSP for its status by key, every `status_poll_interval_s`.
    refund_attempts_max: int = 12

    # --- refunds -----------------------------------------------------------------------------
    #: Refunds one order may have (failed ones included): bounds what a refund's creation
    #: reads to see how much of the order is left to refund.
    refunds_per_order_max: int = 50

    # --- disputes ----------------------------------------------------------------------------
    #: An OPEN dispute asks the PSP for its status this often, in case its close webhook is
    #: lost (a real dispute takes weeks; the question costs one GET per open dispute).
    dispute_poll_interval_s: float = 600.0
    #: A lost dispute's recovery re-reads the seller's balance and tries again this many times
    #: when a concurrent posting (another order's refund or dispute) spent it meanwhile.
    dispute_recovery_attempts_max: int = 8
    # --- payouts (actors/merchant.py) ----------------------------------------------------------
    #: Unknown payout outcomes retried under the same key before the payout only asks the
    #: provider for its status by key, every `status_poll_interval_s`.
    payout_attempts_max: int = 12
    payout_call_timeout_s: float = 10.0
    #: How often a payout the provider holds as pending (or whose outcome stayed unknown) is
    #: asked about: payouts take hours to days, so polling every minute would only add load.
    payout_poll_interval_s: float = 1800.0
    #: Days captured money stays pending for a merchant without a schedule of its own.
    payout_delay_days_default: int = 0
    #: How often the payout scheduler looks for scheduled payouts that are due.
    payout_schedule_interval_s: float = 3600.0
    #: The most payouts `list_payouts` returns per page and one merchant may have in flight.
    payouts_in_flight_max: int = 100

    # --- outbox ------------------------------------------------------------------------------
    outbox_batch_size_max: int = 100
    outbox_poll_interval_s: float = 0.5
    #: Under load (commits came in while a consumer handled its last batch), it waits this long
    #: before fetching again, so that one fetch and one ack unit of work take the messages of
    #: many commits (group commit; PostgreSQL's `commit_delay` and Kafka's `linger.ms` do the
    #: same). It bounds the latency it adds; an idle consumer fetches at once. 0: never waits.
    outbox_linger_s: float = 0.005
    delivery_attempts_max: int = 8
    delivery_delay_s_base: float = 1.0
    delivery_delay_s_max: float = 3600.0
    #: Merchant webhooks (the `notifications` subscriber) retry on their own, longer schedule:
    #: 60 s doubling to a 6 h cap, 21 attempts. The 20 waits sum to 60*(2^9-1) + 11*6 h
    #: = 268,260 s (about 3.1 days, jitter averaging out), then the delivery is dead-lettered.
    notification_attempts_max: int = 21
    notification_delay_s_base: float = 60.0
    notification_delay_s_max: float = 6 * 3600.0

    # --- risk --------------------------------------------------------------------------------
    risk_amount_minor_max: int = 1_000_000_00
    risk_velocity_checkouts_max: int = 20
    risk_velocity_window_s: float = 60.0
    risk_velocity_buyers_tracked_max: int = 100_000
    blocked_sellers: frozenset[str] = frozenset()

    def check(self) -> EngineConfig:
        """Raise InvalidInput naming the first broken relation between limits."""
        positive = {
            name: getattr(self, name)
            for name in (
                "mailbox_capacity_max",
                "ask_timeout_s",
                "actor_idle_timeout_s",
                "actors_max",
                "restarts_per_window_max",
                "restart_window_s",
                "shutdown_timeout_s",
                "checkout_expiry_s",
                "orders_per_checkout_max",
                "psp_call_timeout_s",
                "retry_delay_s_base",
                "retry_delay_s_max",
                "capture_attempts_max",
                "refund_attempts_max",
                "refunds_per_order_max",
                "dispute_poll_interval_s",
                "dispute_recovery_attempts_max",
                "payout_attempts_max",
                "payout_call_timeout_s",
                "payout_poll_interval_s",
                "payout_schedule_interval_s",
                "payouts_in_flight_max",
                "outbox_batch_size_max",
                "outbox_poll_interval_s",
                "delivery_attempts_max",
                "notification_attempts_max",
                "notification_delay_s_base",
                "recovery_batch_size_max",
                "store_retry_delay_s_base",
                "store_retry_delay_s_max",
            )
        }
        for name, value in positive.items():
            if isinstance(value, bool) or value <= 0:
                raise InvalidInput(f"config {name} must be positive, got {value!r}")
        if not 0 <= self.outbox_linger_s < self.outbox_poll_interval_s:
            raise InvalidInput("config outbox_linger_s must be within [0, outbox_poll_interval_s)")
        if self.refunds_per_order_max > 1000:  # one page of the store (PAGE_SIZE_MAX)
            raise InvalidInput("config refunds_per_order_max must be at most 1000")
        if self.payouts_in_flight_max > 1000 or self.payout_delay_days_default < 0:
            raise InvalidInput("config payouts_in_flight_max must be at most 1000, delay >= 0")
        if self.retry_delay_s_base > self.retry_delay_s_max:
            raise InvalidInput("config retry_delay_s_base must not exceed retry_delay_s_max")
        if self.store_retry_delay_s_base > self.store_retry_delay_s_max:
            raise InvalidInput(
                "config store_retry_delay_s_base must not exceed store_retry_delay_s_max"
            )
        if self.retry_delay_factor < 1:
            raise InvalidInput("config retry_delay_factor must be at least 1")
        if not 0 <= self.retry_jitter_ratio < 1:
            raise InvalidInput("config retry_jitter_ratio must be within [0, 1)")
        if not 0 <= self.commission_bps <= 10_000:
            raise InvalidInput("config commission_bps must be within 0..10000")
        if self.delivery_delay_s_base > self.delivery_delay_s_max:
            raise InvalidInput("config delivery_delay_s_base must not exceed delivery_delay_s_max")
        if self.notification_delay_s_base > self.notification_delay_s_max:
            raise InvalidInput(
                "config notification_delay_s_base must not exceed notification_delay_s_max"
            )
        return self


def backoff_delay_s(
    attempt: int, base_s: float, factor: float, cap_s: float, jitter_ratio: float, unit: float
) -> float:
    """Exponential backoff with jitter: base * factor^(attempt-1), capped, then ± jitter.

    `unit` is a number in [0, 1) from the injected rng, so the schedule is reproducible.
    """
    assert attempt >= 1 and 0.0 <= unit < 1.0
    delay = min(cap_s, base_s * factor ** min(attempt - 1, 64))
    return max(0.0, delay * (1.0 + jitter_ratio * (2.0 * unit - 1.0)))


def store_retry_delay_s(config: EngineConfig, attempt: int) -> float:
    """How long to wait before the `attempt`-th retry of a call the unavailable store refused:
    doubling from `store_retry_delay_s_base` to `store_retry_delay_s_max`, without jitter (no
    rng is drawn, so a simulated run's trace does not depend on whether an outage happened)."""
    return backoff_delay_s(
        attempt, config.store_retry_delay_s_base, 2.0, config.store_retry_delay_s_max, 0.0, 0.0
    )
