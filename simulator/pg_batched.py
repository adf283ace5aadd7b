"""Write-behind units in the simulator's PostgreSQL tier, with the tier's crash points (issue 15).

Why: the actors, actors/service.py and web/idempotency.py open write-behind units
(engine/store/batching.py): writes queued, applied at the unit's end and group-committed with
other units' (engine/store/pg_batch.py). While `PgSimStore` had no such unit they got its
ordinary one, so the oracle and crash tests on PostgreSQL never ran the path production runs.
`PgSimStore.batched_unit_of_work` runs the real store's write-behind unit with the crash points
the tier puts around an ordinary unit (simulator/pg_store.py):

- when the unit begins, and before each of its operations (a read of committed state, or a
  write that is only queued): a crash cancels the incarnation, the block raises, and nothing of
  the unit is written; during a simulated outage the world's checkpoint refuses there;
- before the group commit (the block's end, every write queued): the same, nothing written;
- the commit itself is shielded in the store (it answers, or outlives `commit_timeout_s` with
  an unknown outcome): a crash armed while it runs fires after it;
- after the group commit, before the caller's code runs again: everything is written but the
  caller never learns it (the process died between its commit and its reply). This point only
  fires a crash, never the simulated outage: the database did answer.

`BatchedCounts` goes into the run's tier report, so a run shows the path was taken.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from engine.store.pg_batch import BatchedUnitOfWork
from engine.store.postgres import PostgresStore

Checkpoint = Callable[[], Awaitable[None]]


@attrs.define
class BatchedCounts:
    """Write-behind units of one run, by how they ended: `committed`, `empty`,
    `cancelled_before_commit` and `raised` count each unit once; `cancelled_after_commit` is a
    part of `committed` and `empty`."""

    #: Ended normally with writes (or acks) that the group commit applied.
    committed: int = 0
    #: Ended normally with nothing to write: no commit was needed.
    empty: int = 0
    #: Cancelled inside the unit, before the group commit (a crash at one of its crash points,
    #: or the caller's own deadline): nothing of it was written.
    cancelled_before_commit: int = 0
    #: Of those committed or empty, cancelled at the crash point after the commit: written,
    #: and the caller not told.
    cancelled_after_commit: int = 0
    #: Raised anything else (an expected error, the simulated outage, a refused statement, a
    #: commit that failed or did not answer): nothing written, or an unknown outcome.
    raised: int = 0

    def report(self) -> dict[str, int]:
        return attrs.asdict(self)


@asynccontextmanager
async def crashing_batched_unit(
    pg: PostgresStore,
    *,
    wrap: Callable[[Any], Any],
    checkpoint: Checkpoint,
    crash_point: Checkpoint,
    counts: BatchedCounts,
) -> AsyncIterator[Any]:
    """`pg`'s write-behind unit with the crash points of the module doc; `wrap` puts the
    per-operation crash point on the unit (pg_store.py's `_CrashingUnit`)."""
    try:
        await checkpoint()
        async with pg.batched_unit_of_work() as uow:
            assert isinstance(uow, BatchedUnitOfWork)
            yield wrap(uow)
            wrote = bool(uow.pending_writes or uow.pending_acks)
            await checkpoint()  # a crash here: nothing of the unit reaches the group commit
    except trio.Cancelled:
        counts.cancelled_before_commit += 1
        raise
    except BaseException:
        counts.raised += 1
        raise
    if wrote:
        counts.committed += 1
    else:
        counts.empty += 1
    try:
        await crash_point()  # a crash here: all of the unit is written, its caller never knows
    except trio.Cancelled:
        counts.cancelled_after_commit += 1
        raise
