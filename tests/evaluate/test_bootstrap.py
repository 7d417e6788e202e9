"""The paired bootstrap every comparison uses (compare, the experiment verdicts): one seed row is the plain
paired bootstrap over images."""

from __future__ import annotations

import numpy as np
import pytest

from crowdvlm.evaluate.bootstrap import paired_bootstrap


def _one_seed(a, b, **kw):
    return paired_bootstrap(np.asarray(a, dtype=float)[None, :], np.asarray(b, dtype=float)[None, :], **kw)


def test_identical_models_differ_by_zero():
    errors = np.arange(50, dtype=float)
    ci = _one_seed(errors, errors, n_boot=500)
    assert (ci.diff, ci.low, ci.high, ci.excludes_zero) == (0.0, 0.0, 0.0, False)


def test_interval_covers_the_difference_is_reproducible_and_paired():
    rng = np.random.default_rng(1)
    a = rng.exponential(10, 400)
    b = a + rng.normal(-2.0, 3.0, 400)  # b better by ~2 on average, noisy
    r1 = _one_seed(b, a, n_boot=1000, seed=7)
    assert r1 == _one_seed(list(b), list(a), n_boot=1000, seed=7)
    assert r1.diff == pytest.approx(float(np.mean(b - a)))
    assert r1.low < r1.diff < r1.high < 0 and r1.excludes_zero
    assert r1.n_images == 400
    # the pairing matters: an unpaired resample of the same data would be far wider
    assert r1.high - r1.low < 1.5


def test_noise_only_is_not_significant():
    rng = np.random.default_rng(2)
    a = rng.exponential(5, 200)
    b = np.abs(a + rng.normal(0, 0.5, 200) * rng.choice([-1, 1], 200))
    ci = _one_seed(b, a, n_boot=1000)
    assert ci.low < 0 < ci.high and not ci.excludes_zero


@pytest.mark.parametrize(("a", "b"), [([[1, 2]], [[1]]), ([[]], [[]]), ([1, 2], [1, 2])])
def test_refuses_unpaired_or_empty_inputs(a, b):
    with pytest.raises(ValueError, match="paired errors"):
        paired_bootstrap(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
