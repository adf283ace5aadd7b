"""A serving process freezes its start-up objects and collects cycles less often."""

from __future__ import annotations

import gc

from web.gctune import GC_GEN0_THRESHOLD, GC_GEN1_THRESHOLD, GC_GEN2_THRESHOLD, tune_for_serving


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_tune_for_serving_freezes_and_raises_thresholds_yet_cycles_are_still_collected() -> None:
    before = gc.get_threshold()
    try:
        tune_for_serving()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (GC_GEN0_THRESHOLD, GC_GEN1_THRESHOLD, GC_GEN2_THRESHOLD)
        collected_before = sum(s["collected"] for s in gc.get_stats())
        for _ in range(100):
            _Cycle()
        gc.collect()
        assert sum(s["collected"] for s in gc.get_stats()) >= collected_before + 100
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
