"""Garbage-collector settings for a long-running serving process.

Why: CPython's cyclic collector stops the whole process (every request, every actor) for a full
collection, and a full collection walks every tracked object. After start-up the process holds
~100k long-lived objects (modules, the app, the engine); under load a full collection ran every
~10 s and took 70-300 ms on the bench machine, growing with the heap: most of the p99 at
moderate rates. `tune_for_serving` moves everything alive at start-up out of the collector's
sight (`gc.freeze`, it is never garbage) and makes collections rarer; garbage without cycles
is still freed at once by reference counting. Call it once, after start-up, in a process that
only serves (not in tests, which start many apps in one process).
"""

from __future__ import annotations

import gc

#: Allocations (minus deallocations) between young collections (CPython's default is 700).
GC_GEN0_THRESHOLD = 50_000
#: Young collections per middle one, and middle collections per full one (defaults 10, 10).
GC_GEN1_THRESHOLD = 20
GC_GEN2_THRESHOLD = 20


def tune_for_serving() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, GC_GEN1_THRESHOLD, GC_GEN2_THRESHOLD)
