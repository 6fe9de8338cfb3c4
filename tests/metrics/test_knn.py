"""k-NN precision and recall: brute force, controls (off-support, dropped mode), chunking."""

import math

import numpy as np
import pytest
import torch

from labkit.metrics import knn
from labkit.metrics.knn import precision_recall


def _rand(*shape, seed=0, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64) + shift


def _brute(real, gen, k):
    """Kynkäänniemi et al.'s definition with full numpy distance matrices."""
    def dist(a, b):
        return np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))

    def inside(queries, points):
        radii = np.sort(dist(points, points), axis=1)[:, k]  # column 0 is the point itself
        return (dist(queries, points) <= radii[None]).any(axis=1).mean()
    real, gen = np.asarray(real), np.asarray(gen)
    return inside(gen, real), inside(real, gen)


def test_matches_brute_force_and_chunking(monkeypatch):
    real, gen = _rand(80, 3, seed=1), _rand(70, 3, seed=2, shift=0.7)
    for k in (1, 3, 10):
        pr = precision_recall(real, gen, k=k)
        want = _brute(real, gen, k)
        assert (pr.precision.value, pr.recall.value) == pytest.approx(want, abs=0)  # counts
    whole = precision_recall(real, gen)
    monkeypatch.setattr(knn, "CHUNK_ENTRIES", 100)  # row blocks of one or two rows
    assert precision_recall(real, gen) == whole


def test_identical_distributions_give_high_precision_and_recall():
    pr = precision_recall(_rand(600, 2, seed=3), _rand(600, 2, seed=4))
    # Measured 0.98-0.99 at n = 1000 (k = 3); at n = 600 anything below 0.93 is a defect.
    assert pr.precision.value > 0.93 and pr.recall.value > 0.93
    assert pr.precision.contains(pr.precision.value) and pr.precision.stderr > 0


def test_off_support_samples_lower_precision():
    real = _rand(600, 2, seed=5)
    good, bad = _rand(300, 2, seed=6), _rand(300, 2, seed=7, shift=8.0)
    pr = precision_recall(real, torch.cat([good, bad]))
    # Half of the generated points sit 8 sd away: precision about 0.5 (binomial sd 0.03).
    assert 0.4 < pr.precision.value < 0.55
    assert pr.precision.interval[1] < 0.6
    assert pr.recall.value > 0.9  # the real support is still covered


def test_dropped_mode_lowers_recall_not_precision():
    real = torch.cat([_rand(300, 2, seed=8, shift=-5.0), _rand(300, 2, seed=9, shift=5.0)])
    gen = _rand(600, 2, seed=10, shift=5.0)
    pr = precision_recall(real, gen)
    assert 0.4 < pr.recall.value < 0.55  # one of two equal modes missing
    assert pr.precision.value > 0.9


def test_wilson_interval():
    est = knn._wilson(0, 10, 0.95, "t")
    z = 1.959963984540054
    # Closed form for 0 successes: upper = z^2 / (n + z^2).
    np.testing.assert_allclose(est.interval, (0.0, z * z / (10 + z * z)), rtol=1e-12)
    est = knn._wilson(37, 100, 0.95, "t")
    centre = (0.37 + z * z / 200) / (1 + z * z / 100)
    np.testing.assert_allclose(sum(est.interval) / 2, centre, rtol=1e-12)
    np.testing.assert_allclose(est.stderr, math.sqrt(0.37 * 0.63 / 100), rtol=1e-12)


@pytest.mark.parametrize("real, gen, kwargs, error, match", [
    (np.zeros((5, 2)), np.zeros((5, 3)), {}, ValueError, "same dimension"),
    (np.zeros((0, 2)), np.zeros((5, 2)), {}, ValueError, "real must hold"),
    (np.eye(5), np.full((5, 5), np.nan), {}, ValueError, "generated must be finite"),
    (np.eye(5), np.eye(5), {"k": 5}, ValueError, "k must be <"),
    (np.eye(5), np.eye(5)[:4], {"k": 4}, ValueError, "k must be <"),
    (np.eye(5), np.eye(5), {"k": 0}, ValueError, "k must be >= 1"),
    (np.eye(5), np.eye(5), {"k": 2.0}, TypeError, "k must be an int"),
    (np.eye(5), np.eye(5), {"level": 0.0}, ValueError, "level"),
])
def test_bad_input(real, gen, kwargs, error, match):
    with pytest.raises(error, match=match):
        precision_recall(real, gen, **kwargs)
