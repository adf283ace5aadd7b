"""Outbox consumers: each subscriber drains its own deliveries, independently of the others.

A subscriber's pending deliveries are its durable cursor (engine/store/port.py). The consumer
loop fetches the due ones in batches, hands each to the subscriber's handler, and on failure
schedules a retry with exponential backoff and jitter; after `delivery_attempts_max` attempts
the delivery moves to the dead-letter queue with its last error, where an operator can see and
replay it. One slow or failing subscriber never blocks another: each has its own task.

Handlers are idempotent. A handler with a database effect acks the delivery inside its own unit
of work (`acks_itself`), so its effect and the ack commit together: exactly-once effect; such
deliveries run concurrently, up to `concurrency_max`. Other handlers run a fetched batch
concurrently and the consumer acks the batch in one unit of work once they returned
(at-least-once to the outside world); an `inline` subscriber's handler does not block, so the
consumer runs its batch itself, in order, without a task per delivery.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import attrs
import trio

from actors.context import Context
from actors.store_retry import when_store_answers
from engine.errors import StoreUnavailable
from engine.limits import backoff_delay_s
from engine.records import Delivery

log = logging.getLogger("payengine.outbox")

#: How long one handler call may take before it counts as a failed attempt.
HANDLER_TIMEOUT_S = 30.0
#: The most deliveries of one subscriber handled at the same time.
SUBSCRIBER_CONCURRENCY_MAX = 32
#: The longest error text kept with a retry or a dead letter.
ERROR_TEXT_MAX = 500

Handler = Callable[[Delivery], Awaitable[None]]


@attrs.frozen
class Subscriber:
    name: str
    topics: tuple[str, ...]
    handle: Handler
    acks_itself: bool = False
    concurrency_max: int = SUBSCRIBER_CONCURRENCY_MAX
    #: This subscriber's own retry schedule; None takes the engine's delivery_* settings.
    attempts_max: int | None = None
    delay_s_base: float | None = None
    delay_s_max: float | None = None
    #: The handler never blocks (in-memory work only: counters, a bounded buffer): the consumer
    #: runs a batch in its own task, in order, with no task and no deadline per delivery.
    inline: bool = False


@attrs.define
class SubscriberStats:
    delivered: int = 0
    retried: int = 0
    dead_lettered: int = 0
    #: Rounds that failed on the store (unreachable, pool exhausted, timed out) and were retried.
    store_errors: int = 0


class OutboxConsumer:
    def __init__(self, ctx: Context, subscriber: Subscriber) -> None:
        self.ctx = ctx
        self.subscriber = subscriber
        self.stats = SubscriberStats()
        self._in_flight: set[str] = set()
        self._limit = trio.Semaphore(subscriber.concurrency_max)
        #: Deliveries due later than now (retries) may be pending: ask the store when the next
        #: is due before waiting. Cleared when nothing is pending at all, set again by a retry;
        #: every other delivery is due at once and rings the doorbell when committed.
        self._retries_maybe = True

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        name, topics = self.subscriber.name, self.subscriber.topics
        await when_store_answers(
            self.ctx.config,
            f"outbox {name}: registration",
            lambda: self.ctx.store.register_subscriber(name, topics),
        )
        self.ctx.doorbell.subscribe(self.subscriber.name, self.subscriber.topics)
        failed_rounds = 0
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                try:
                    await self._round(nursery)
                    failed_rounds = 0
                except Exception as exc:  # trio.Cancelled is a BaseException: never caught here
                    # The store failed or timed out (a full pool, a lost connection): nothing
                    # was acked, so every delivery is still pending; try again after a backoff
                    # instead of taking the engine down with this consumer.
                    failed_rounds += 1
                    self.stats.store_errors += 1
                    delay_s = self.ctx.backoff_s(failed_rounds)
                    log.log(
                        # An outage is weather (docs/operations.md): no stack trace for it.
                        logging.WARNING if isinstance(exc, StoreUnavailable) else logging.ERROR,
                        "outbox %s: round failed, retrying in %.1f s: %r",
                        self.subscriber.name,
                        delay_s,
                        exc,
                        exc_info=None if isinstance(exc, StoreUnavailable) else exc,
                    )
                    await trio.sleep(delay_s)
        raise AssertionError("OutboxConsumer.run never returns")

    async def _round(self, nursery: trio.Nursery) -> None:
        """Fetch what is due, hand it out, then wait for more unless more is due at once."""
        now_ms = self.ctx.clock.now_ms()
        limit = self.ctx.config.outbox_batch_size_max + len(self._in_flight)
        due = await self.ctx.store.fetch_due_deliveries(self.subscriber.name, now_ms, limit)
        fresh = [d for d in due if d.message.message_id not in self._in_flight]
        if self.subscriber.acks_itself:
            for delivery in fresh:
                await self._limit.acquire()  # backpressure: bounded handlers in flight
                self._in_flight.add(delivery.message.message_id)
                nursery.start_soon(self._deliver, delivery)
        elif fresh:
            # Handlers without a database effect: run the batch, then ack it in one unit of
            # work (at-least-once to the outside world).
            await self._deliver_batch(fresh)
        if fresh and (self.subscriber.acks_itself or len(due) >= limit):
            return  # maybe more due already (the fetch is a checkpoint)
        # A short batch took all that was due at the fetch; a commit since then rang the
        # doorbell, so the wait returns at once if there is more. Under load (commits came in
        # during this round), linger, so that the next round takes the messages of the commits
        # that follow too (one fetch, one ack); when idle, the first commit is fetched at once.
        busy = self.ctx.doorbell.is_rung(self.subscriber.name)
        await self.ctx.doorbell.wait(self.subscriber.name, await self._idle_wait_s(now_ms))
        if busy and self.ctx.config.outbox_linger_s > 0:
            await trio.sleep(self.ctx.config.outbox_linger_s)

    async def _idle_wait_s(self, now_ms: int) -> float:
        wait_s = self.ctx.config.outbox_poll_interval_s
        if not self._retries_maybe:
            return wait_s
        next_ms = await self.ctx.store.next_delivery_due_ms(self.subscriber.name)
        if next_ms is None:
            self._retries_maybe = False
        elif next_ms > now_ms:
            wait_s = min(wait_s, (next_ms - now_ms) / 1000)
        return max(wait_s, 0.001)

    async def _deliver_batch(self, deliveries: list[Delivery]) -> None:
        failures: list[tuple[Delivery, Exception]] = []
        done: list[Delivery] = []

        async def one(delivery: Delivery) -> None:
            try:
                with trio.fail_after(HANDLER_TIMEOUT_S):
                    await self.subscriber.handle(delivery)
                done.append(delivery)
            except Exception as exc:  # trio.Cancelled is a BaseException: never caught here
                failures.append((delivery, exc))
            finally:
                self._limit.release()

        if self.subscriber.inline:
            for delivery in deliveries:
                try:
                    await self.subscriber.handle(delivery)
                    done.append(delivery)
                except Exception as error:  # trio.Cancelled is a BaseException: never caught
                    failures.append((delivery, error))
        else:
            async with trio.open_nursery() as nursery:
                for delivery in deliveries:
                    await self._limit.acquire()
                    nursery.start_soon(one, delivery)
        async with self.ctx.store.unit_of_work() as uow:
            for delivery in done:
                await uow.ack_delivery(self.subscriber.name, delivery.message.message_id)
        self.stats.delivered += len(done)
        for delivery, exc in failures:
            await self._failed(delivery, exc)

    async def _deliver(self, delivery: Delivery) -> None:
        message_id = delivery.message.message_id
        try:
            try:
                with trio.fail_after(HANDLER_TIMEOUT_S):
                    await self.subscriber.handle(delivery)
                self.stats.delivered += 1
            except Exception as exc:  # trio.Cancelled is a BaseException: never caught here
                await self._failed(delivery, exc)
        except Exception as exc:  # recording the failure failed (the store): still pending
            self.stats.store_errors += 1
            log.error("outbox %s: %s stays pending: %r", self.subscriber.name, message_id, exc)
        finally:
            self._in_flight.discard(message_id)
            self._limit.release()
            # Its retry time (or the slot it freed) may be sooner than the loop's wait.
            self.ctx.doorbell.ring_one(self.subscriber.name)

    async def _failed(self, delivery: Delivery, exc: Exception) -> None:
        config = self.ctx.config
        subscriber = self.subscriber
        attempts_max = subscriber.attempts_max or config.delivery_attempts_max
        delay_s_base = subscriber.delay_s_base or config.delivery_delay_s_base
        delay_s_max = subscriber.delay_s_max or config.delivery_delay_s_max
        attempts = delivery.attempts + 1
        error = f"{type(exc).__name__}: {exc}"[:ERROR_TEXT_MAX]
        now_ms = self.ctx.clock.now_ms()
        async with self.ctx.store.unit_of_work() as uow:
            if attempts >= attempts_max:
                await uow.dead_letter_delivery(
                    self.subscriber.name, delivery.message.message_id, error, now_ms
                )
                self.stats.dead_lettered += 1
                log.error(
                    "dead-lettered %s for %s after %d attempts: %s",
                    delivery.message.message_id,
                    self.subscriber.name,
                    attempts,
                    error,
                )
            else:
                delay_s = backoff_delay_s(
                    attempts,
                    delay_s_base,
                    2.0,
                    delay_s_max,
                    config.retry_jitter_ratio,
                    self.ctx.rng.random(),
                )
                await uow.retry_delivery(
                    self.subscriber.name,
                    delivery.message.message_id,
                    now_ms + int(delay_s * 1000),
                    error,
                )
                self.stats.retried += 1
        self._retries_maybe = True  # after the commit, so a concurrent look cannot miss it


def subscriber_names(subscribers: Sequence[Subscriber]) -> list[str]:
    return [s.name for s in subscribers]
