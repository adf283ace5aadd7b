"""Ownership leases: which engine process drives which entity (issue 14, several processes).

Why: several `payengine serve` processes share one database, and an entity (a checkout with its
orders, a merchant's wallet) must be driven by one process at a time, or two processes call the
PSP for the same order at once. The key space is cut into `PARTITIONS` partitions by a stable
hash of an entity's *family key* (the payment id for a checkout, its orders, their refunds and
disputes; the merchant id for a merchant's actor); a process drives a partition only while it
holds its lease (actors/lease_manager.py). The lease's `epoch` grows by one at every takeover,
and every unit of work of an owned entity checks, in its own transaction, that its process still
holds the partition at the epoch it drove it under (`Fence`): a process that was paused past its
lease and resumed cannot write (engine/store/pg_leases.py).

This module is pure: the partition function, the limits, the fence carried by the current task,
and the errors. Lease times are on the database's clock; a process's own (monotonic) clock only
tells it when to stop trusting what it last renewed.
"""

from __future__ import annotations

import contextvars
import hashlib
import math
from collections.abc import Sequence
from typing import Protocol

import attrs

from engine.errors import InvalidInput, PayengineError

#: How many partitions the key space is cut into (fixed: changing it moves every entity).
PARTITIONS = 64
#: A lease lasts this long on the database's clock after its last renewal.
LEASE_TTL_S = 3.0
#: How often a process renews its leases and membership: well before they expire.
LEASE_RENEW_S = 0.5
#: A process stops driving a partition this long before its lease expires (the renewal's
#: round trip and a scheduling hiccup fit in it).
LEASE_SAFETY_S = 1.0
#: How often the owner looks for work that a process without the lease recorded (a checkout
#: created on another process), in its own partitions.
LEASE_SWEEP_S = 1.0


@attrs.frozen
class LeaseLimits:
    partitions: int = PARTITIONS
    ttl_s: float = LEASE_TTL_S
    renew_s: float = LEASE_RENEW_S
    safety_s: float = LEASE_SAFETY_S
    sweep_s: float = LEASE_SWEEP_S

    def check(self) -> LeaseLimits:
        if not 0 < self.partitions <= 4096:
            raise InvalidInput("lease partitions must be 1..4096")
        if min(self.ttl_s, self.renew_s, self.safety_s, self.sweep_s) <= 0:
            raise InvalidInput("lease times must be positive")
        if self.renew_s + self.safety_s >= self.ttl_s:
            raise InvalidInput("a lease must be renewed (renew_s + safety_s) well before ttl_s")
        return self


def partition_of(family_key: str, partitions: int = PARTITIONS) -> int:
    """The partition of a family key: stable across processes, versions and restarts (not
    Python's salted `hash`)."""
    digest = hashlib.sha256(family_key.encode()).digest()
    return int.from_bytes(digest[:8], "big") % partitions


def fair_share(partitions: int, members: int) -> int:
    """How many partitions one of `members` live processes should hold (rounded up, so that
    every partition has a taker)."""
    assert partitions > 0
    return math.ceil(partitions / max(1, members))


@attrs.frozen(order=True)
class Grant:
    """A partition held at an epoch."""

    partition: int
    epoch: int


@attrs.frozen
class LeaseRow:
    """One row of the lease table as an operator (and the tests) see it."""

    partition: int
    owner: str | None
    epoch: int
    live: bool


@attrs.frozen
class Fence:
    """What a unit of work of an owned entity must find in the lease table to commit."""

    partition: int
    owner: str
    epoch: int


#: The fence of the entity the current task drives (set by actors/placement.py around an
#: actor's handler); None outside owned work (reads, the API's own units, a single process).
CURRENT_FENCE: contextvars.ContextVar[Fence | None] = contextvars.ContextVar(
    "payengine_fence", default=None
)


class Fenced(PayengineError):
    """This process must not drive that entity now; nothing was written."""


class NotOwner(Fenced):
    """The entity's partition is not held by this process (another one drives it)."""

    def __init__(self, partition: int) -> None:
        super().__init__(f"partition {partition} is not held by this process")
        self.partition = partition


class LeaseLost(Fenced):
    """A commit found the partition taken over (or released) since the work began: the unit
    was rolled back and the actor reloads."""

    def __init__(self, fence: Fence) -> None:
        super().__init__(
            f"lease of partition {fence.partition} at epoch {fence.epoch} is no longer "
            f"held by {fence.owner}: the unit of work was rolled back"
        )
        self.fence = fence


class LeaseStore(Protocol):
    """The lease table (PostgreSQL: engine/store/pg_leases.py; one process: memory_leases.py).
    Every operation is one statement, atomic on its own, with times on the store's clock."""

    async def ensure_partitions(self, partitions: int) -> None:
        """Create the partitions' rows (idempotent)."""
        ...

    async def join(self, me: str, url: str, ttl_s: float) -> int:
        """Renew `me`'s membership (serving the API at `url`); the number of live members."""
        ...

    async def renew(self, me: str, held: Sequence[int], ttl_s: float) -> list[Grant]:
        """Extend the leases of `held` that `me` still owns; those it owns, with their epoch."""
        ...

    async def acquire(self, me: str, count: int, ttl_s: float) -> list[Grant]:
        """Take at most `count` partitions that nobody holds or whose lease expired, each at
        its epoch + 1."""
        ...

    async def release(self, me: str, partitions: Sequence[int]) -> None:
        """Give up `partitions` at once (clean shutdown): they are free to take."""
        ...

    async def leave(self, me: str) -> None:
        """Give up every partition and the membership (clean shutdown)."""
        ...

    async def owner_url(self, partition: int) -> str | None:
        """Where the live owner of `partition` serves the API; None when nobody holds it."""
        ...

    async def table(self) -> list[LeaseRow]: ...


@attrs.frozen
class LeaseOptions:
    """Run the engine as one of several processes on one database (`payengine serve --leases`).

    `url`: where this process serves the API (requests for partitions it does not hold are
    forwarded to their owner's). `incarnation`: this process's owner id (None: a new one)."""

    url: str
    limits: LeaseLimits = attrs.Factory(LeaseLimits)
    incarnation: str | None = None
