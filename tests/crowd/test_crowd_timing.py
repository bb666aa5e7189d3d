"""Seconds per task by kind (crowd/timing.py): drawing as before, judgements and choices 3-9 s, texts by length,
finding a link 40-90 s; times the worker's speed."""

import numpy as np
import pytest

from crowdboxes.local_toloka.crowd import make_workforce, seconds_for


def _mean(worker, kind, n=600, **kw):
    rng = np.random.default_rng(1)
    return float(np.mean([seconds_for(worker, 1, rng, kind, **kw) for _ in range(n)]))


def test_seconds_by_kind():
    careful = make_workforce(1, 0, mix={"careful": 1})[0]
    lognormal_mean = np.exp(0.25 ** 2 / 2)
    assert _mean(careful, "judgement") == pytest.approx(6 * lognormal_mean, rel=0.1)
    assert _mean(careful, "choice") == pytest.approx(6 * lognormal_mean, rel=0.1)
    assert _mean(careful, "text", n_chars=40) == pytest.approx((4 + 0.35 * 40) * lognormal_mean, rel=0.1)
    assert _mean(careful, "link") == pytest.approx(65 * lognormal_mean, rel=0.1)
    assert _mean(careful, "drawing", n_boxes=2) == pytest.approx((6 + 50) * lognormal_mean, rel=0.1)
    assert _mean(careful, "generic") < _mean(careful, "link")
    slow = make_workforce(1, 0, mix={"slow": 1})[0]
    assert _mean(slow, "text", n_chars=10) == pytest.approx(3 * _mean(careful, "text", n_chars=10), rel=0.15)


def test_aliases_give_the_same_draws():
    worker = make_workforce(1, 0, mix={"careful": 1})[0]
    for old, new in (("verification", "judgement"), ("detection", "drawing")):
        assert seconds_for(worker, 3, np.random.default_rng(2), old, 4) == \
            seconds_for(worker, 3, np.random.default_rng(2), new, 4)
