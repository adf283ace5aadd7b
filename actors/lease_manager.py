"""The lease manager: holds this process's fair share of the partitions (engine/leases.py).

One trio task in the engine's nursery. Every `renew_s` it renews its membership (which says how
many processes are alive, hence the fair share) and its leases, takes free or expired
partitions up to its share (a takeover: epoch + 1, engine/store/pg_leases.py) and stops
driving partitions beyond its share when others need them. A partition given up for balance is
not released but left to lapse: its lease stays ours for `ttl_s`, so work in flight finishes
(and commits through its fence) before another process may take it. On clean shutdown every
lease is released at once.

What the process may drive is decided on its own monotonic clock: a lease counts as held until
`ttl_s - safety_s` after the start of the renewal that last extended it. A process paused
(SIGSTOP) past that finds, on resuming, that it holds nothing before it renews, so it starts no
new work for partitions that may have been taken meanwhile; a commit already on its way is
stopped by the fence.

Gained partitions are handed to `on_gained` (recovery of their unfinished entities), and so are
partitions renewed after they had lapsed locally: meanwhile their messages were refused.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from engine.errors import StoreUnavailable
from engine.leases import Fence, Grant, LeaseLimits, LeaseStore, fair_share, partition_of

log = logging.getLogger("payengine.leases")

#: Giving every lease up on shutdown is one statement; past this they lapse by themselves.
LEAVE_TIMEOUT_S = 2.0


class LeaseManager:
    def __init__(
        self,
        leases: LeaseStore,
        me: str,
        url: str,
        limits: LeaseLimits,
        on_gained: Callable[[frozenset[int]], Awaitable[None]],
    ) -> None:
        self.leases = leases
        self.me = me
        self.url = url
        self.limits = limits.check()
        self._on_gained = on_gained
        #: partition -> the epoch it is held at.
        self._held: dict[int, int] = {}
        self._valid_until = -float("inf")
        self.members = 1
        self.takeovers = 0
        self.renewals = 0
        #: Renewals that came after the leases had lapsed locally (see `tick`).
        self.lapses = 0

    # --- what the engine asks --------------------------------------------------------------
    def partition(self, family_key: str) -> int:
        return partition_of(family_key, self.limits.partitions)

    def fence(self, partition: int) -> Fence | None:
        """The fence to drive `partition` under; None when this process must not drive it."""
        epoch = self._held.get(partition)
        if epoch is None or trio.current_time() >= self._valid_until:
            return None
        return Fence(partition, self.me, epoch)

    def held(self) -> frozenset[int]:
        if trio.current_time() >= self._valid_until:
            return frozenset()
        return frozenset(self._held)

    # --- the task --------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self.leases.ensure_partitions(self.limits.partitions)
        try:
            await self._tick_when_store_answers()
            task_status.started()
            while True:
                await trio.sleep(self.limits.renew_s)
                await self._tick_when_store_answers()
        finally:
            self._held.clear()
            with trio.move_on_after(LEAVE_TIMEOUT_S, shield=True):
                try:
                    await self.leases.leave(self.me)
                except Exception as exc:  # they lapse by themselves; trio.Cancelled passes
                    log.warning("leases not given up: %r", exc)

    async def _tick_when_store_answers(self) -> None:
        try:
            await self.tick()
        except (StoreUnavailable, OSError, trio.TooSlowError) as exc:
            # An outage is weather: what we hold lapses locally on time, and we renew later.
            log.warning("leases not renewed: %r", exc)

    async def tick(self) -> None:
        started = trio.current_time()
        limits = self.limits
        self.members = await self.leases.join(self.me, self.url, limits.ttl_s)
        renewed = await self.leases.renew(self.me, list(self._held), limits.ttl_s)
        self.renewals += 1
        # Trust lapsed before this renewal answered (a slow renewal, a pause): messages for
        # these partitions were refused meanwhile, and a refused tell is gone. What is renewed
        # is then recovered like a partition gained, so nothing refused is left behind.
        regained = frozenset(g.partition for g in renewed)
        if trio.current_time() < self._valid_until:
            regained = frozenset()
        elif regained:
            self.lapses += 1
            log.warning("leases renewed after they lapsed locally: %d recovered", len(regained))
        self._held = {g.partition: g.epoch for g in renewed}
        self._valid_until = started + limits.ttl_s - limits.safety_s
        share = fair_share(limits.partitions, self.members)
        gained: list[Grant] = []
        if len(self._held) < share:
            gained = await self.leases.acquire(self.me, share - len(self._held), limits.ttl_s)
            for grant in gained:
                assert grant.partition not in self._held
                self._held[grant.partition] = grant.epoch
            self.takeovers += len(gained)
        elif len(self._held) > share:
            # Others need partitions: stop driving the surplus and let it lapse (see above).
            for p in sorted(self._held)[share:]:
                del self._held[p]
        if gained:
            log.info(
                "took %d partitions (%d held, %d members)",
                len(gained),
                len(self._held),
                self.members,
            )
        recover = (regained & frozenset(self._held)) | {g.partition for g in gained}
        if recover:
            await self._on_gained(frozenset(recover))
