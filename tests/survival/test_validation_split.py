"""The head's early-stopping split: drawn from the training rows, stratified by event."""
from __future__ import annotations

import numpy as np
import pytest

from fusion.survival.model import _validation_rows


@pytest.mark.parametrize("seed", range(20))
def test_validation_rows_hold_an_event_whenever_training_has_two(seed):
    rng = np.random.default_rng(seed)
    n = 45
    events = np.zeros(n, np.int64)
    events[rng.choice(n, 5, replace=False)] = 1                # rare events, as Hannover's time to death
    test = rng.permutation(n)[:9]
    rest = np.setdiff1d(np.arange(n), test)
    val = _validation_rows(n, rest, events, fraction=0.2, rng=rng)
    assert not val[test].any()
    assert round(0.2 * len(rest)) - 1 <= val.sum() <= round(0.2 * len(rest)) + 1
    if events[rest].sum() >= 2:
        assert events[val].sum() >= 1
        assert events[np.setdiff1d(rest, np.flatnonzero(val))].sum() >= 1     # and training keeps one


def test_validation_rows_keep_one_row_when_the_fraction_rounds_to_none():
    val = _validation_rows(6, np.arange(3), np.zeros(6, np.int64), fraction=0.1, rng=np.random.default_rng(0))
    assert val.sum() == 1 and val[:3].any()
