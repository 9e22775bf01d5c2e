"""The garbage collector settings of a serving node."""

from __future__ import annotations

import gc

from respkv.gc_policy import YOUNG_THRESHOLD, tune_for_serving


def test_tune_for_serving_raises_only_the_young_threshold():
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        tune_for_serving()
        assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
        assert gc.isenabled()
    finally:
        gc.set_threshold(*before)
