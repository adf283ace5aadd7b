"""Deterministic, seeded trio scheduling for simulation runs: a contained monkeypatch.

Why: trio shuffles (or reverses, at random) each batch of ready tasks so that programs do not
come to rely on an order it never promised. That randomness comes from a module-level
`random.Random()` in `trio._core._run` seeded from the OS, so two runs of one seeded scenario
interleave differently and their traces diverge. trio already has the switch we need: under
Hypothesis it sets `_ALLOW_DETERMINISTIC_SCHEDULING`, which sorts each batch by task creation
counter and then shuffles it with `_r`. We set that flag and seed `_r` from the scenario's
seed for the duration of one run, and restore both afterwards, so the interleaving is still
*varied* (a different seed explores a different order) but *reproducible*.

What else trio leaves to chance, and why it does not matter here: the deadline heap breaks ties
by `id(cancel_scope)`, and a cancel scope wakes its tasks in set order; both only decide the
order tasks are appended to the run queue, and the batch is sorted by creation counter before
it is shuffled. The simulator never uses real I/O, so the I/O manager adds nothing.

This module touches trio's private internals (`trio._core._run`, checked against trio 0.27 to
0.35). If a trio upgrade moves them, `deterministic_scheduling` raises at once rather than
silently running a non-reproducible simulation.

The simulator's own randomness is the other half: `stream(seed, name)` gives each consumer
(traffic, PSP faults, webhooks, crashes, each checkout) its own seeded `random.Random`, so
adding a draw to one stream never shifts another.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from trio._core import _run as _trio_run


def stream(seed: int, name: str) -> random.Random:
    """An independent, reproducible random stream (str seeds hash with SHA-512, not hash())."""
    return random.Random(f"{seed}:{name}")


def _check_internals() -> None:
    if not hasattr(_trio_run, "_ALLOW_DETERMINISTIC_SCHEDULING") or not isinstance(
        getattr(_trio_run, "_r", None), random.Random
    ):
        raise RuntimeError(
            "this trio version has no _ALLOW_DETERMINISTIC_SCHEDULING/_r in trio._core._run; "
            "simulator/determinism.py must be updated before simulations can be reproducible"
        )


@contextmanager
def deterministic_scheduling(seed: int) -> Iterator[None]:
    """Within the block, trio orders ready tasks by a function of `seed` alone.

    Not re-entrant and not thread-safe (trio's state is per process): one simulation at a time.
    """
    _check_internals()
    flag_before: Any = _trio_run._ALLOW_DETERMINISTIC_SCHEDULING
    state_before = _trio_run._r.getstate()
    _trio_run._ALLOW_DETERMINISTIC_SCHEDULING = True  # type: ignore[misc]
    _trio_run._r.seed(seed)
    try:
        yield
    finally:
        _trio_run._ALLOW_DETERMINISTIC_SCHEDULING = flag_before  # type: ignore[misc]
        _trio_run._r.setstate(state_before)


@contextmanager
def free_scheduling() -> Iterator[None]:
    """Within the block, trio's deterministic scheduling is off, whoever switched it on.

    For the real-time tier (simulator/pg_world.py): real I/O decides the interleaving there, so
    seeding the scheduler would promise a reproducibility the run cannot keep. Hypothesis's trio
    plugin switches the flag on for a whole test session, so it is not off by default in tests.
    """
    _check_internals()
    flag_before: Any = _trio_run._ALLOW_DETERMINISTIC_SCHEDULING
    _trio_run._ALLOW_DETERMINISTIC_SCHEDULING = False  # type: ignore[misc]
    try:
        yield
    finally:
        _trio_run._ALLOW_DETERMINISTIC_SCHEDULING = flag_before  # type: ignore[misc]
