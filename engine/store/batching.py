"""`batched_unit_of_work(store)`: a write-behind unit of work where the store has one.

Why: on PostgreSQL a unit's writes that answer nothing new can wait for its next read or its
end and travel as one crossing, and write-only units share group commits (pg_batch.py). The
price is that a write's expected error (`DuplicateKey`, `VersionConflict`, ...) surfaces at
the next read or at the end of the block, so callers opt in where they catch errors around
the whole unit, never around one write. Stores without it (memory, the simulator's memory
store) give their ordinary unit, whose errors come earlier: the same outcomes for such
callers. So does a wrapper that delegates by `__getattr__` without defining the method itself
(the simulator's PgSimStore defines it, with its crash points: simulator/pg_batched.py).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, cast

from engine.store.port import Store, UnitOfWork


def batched_unit_of_work(store: Store) -> AbstractAsyncContextManager[UnitOfWork]:
    # The class's own method only: a wrapper that delegates by __getattr__ gets its ordinary
    # unit, not the wrapped store's write-behind one without the wrapper's seams.
    batched: Any = getattr(type(store), "batched_unit_of_work", None)
    if batched is None:
        return store.unit_of_work()
    return cast(AbstractAsyncContextManager[UnitOfWork], batched(store))
