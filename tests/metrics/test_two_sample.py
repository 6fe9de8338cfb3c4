"""Permutation two-sample test: vectorised statistics, exactness under H0, power, inputs."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy.stats import binom

from labkit.metrics import kernel, two_sample
from labkit.metrics.kernel import energy_distance, mmd
from labkit.metrics.two_sample import (TwoSampleResult, _labelled_statistics, _random_labels,
                                       two_sample_test)


def _rand(*shape, seed=0, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64) + shift


@pytest.mark.parametrize("chunk", [1 << 22, 50])
def test_vectorised_statistics_equal_direct_ones(monkeypatch, chunk):
    for module in (kernel, two_sample):  # 50: row blocks of one row
        monkeypatch.setattr(module, "CHUNK_ENTRIES", chunk)
    z = _rand(37, 2, seed=1)
    labels = _random_labels(37, 15, 6, torch.Generator().manual_seed(2), z)
    assert torch.equal(labels.sum(dim=0), torch.full((6,), 15.0, dtype=torch.float64))
    for kern, direct in [(kernel._rbf_kernel((0.9,)), lambda a, b: mmd(a, b, bandwidth=0.9)),
                         (kernel._distance_kernel, energy_distance)]:
        got = _labelled_statistics(z, labels, kern)
        want = [direct(z[labels[:, b] == 1], z[labels[:, b] == 0]).value for b in range(6)]
        np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-12)  # rounding only


def test_statistic_and_p_value_grid():
    x, y = _rand(40, 2, seed=3), _rand(30, 2, seed=4, shift=0.2)
    res = two_sample_test(x, y, n_permutations=99)
    assert isinstance(res, TwoSampleResult)
    np.testing.assert_allclose(res.statistic, mmd(x, y).value, rtol=0, atol=1e-12)
    assert 0 < res.p_value <= 1 and math.isclose(res.p_value * 100, round(res.p_value * 100))
    again = two_sample_test(x, y, n_permutations=99)  # generator=None is seed 0: reproducible
    assert again.p_value == res.p_value
    energy = two_sample_test(x, y, statistic="energy", n_permutations=20)
    np.testing.assert_allclose(energy.statistic, energy_distance(x, y).value, rtol=0, atol=1e-12)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.p_value = 0.0


def test_rejection_rate_under_h0_is_exact_and_power_under_shift():
    reps, n, b = 300, 15, 19
    xs, ys = _rand(reps, n, 1, seed=5), _rand(reps, n, 1, seed=6)
    g = torch.Generator().manual_seed(7)
    for statistic in ("mmd", "energy"):
        p = np.array([two_sample_test(xs[r], ys[r], statistic=statistic, n_permutations=b,
                                      generator=g).p_value for r in range(reps)])
        # With B = 19, P(p <= 0.05) = P(p <= 0.1)/2 = 1/20 exactly under H0; counts are
        # Binomial(300, 0.05) (mean 15, sd 3.8) and Binomial(300, 0.1) (mean 30, sd 5.2): bands
        # of about 4 sd (false failure < 1e-3 together).
        assert 3 <= (p <= 0.05).sum() <= 31
        assert 10 <= (p <= 0.10).sum() <= 52
        # Negative control: on data shifted by 1.5 sd the rejection count leaves the H0 range:
        # under H0 it is Binomial(60, 0.05), whose 1 - 1e-6 quantile is 12 (mean 3).
        shifted = np.array([two_sample_test(xs[r], ys[r] + 1.5, statistic=statistic,
                                            n_permutations=b, generator=g).p_value
                            for r in range(60)])
        assert (shifted <= 0.05).sum() > binom.ppf(1 - 1e-6, 60, 0.05)


def test_reject_helper_and_bad_input():
    res = TwoSampleResult(0.1, 0.04, 99, "m")
    assert res.reject(0.05) and not res.reject(0.01)
    with pytest.raises(ValueError, match="alpha"):
        res.reject(1.5)
    x, y = _rand(10, 2, seed=8), _rand(10, 2, seed=9)
    with pytest.raises(ValueError, match="statistic"):
        two_sample_test(x, y, statistic="wasserstein")
    with pytest.raises(ValueError, match="n_permutations"):
        two_sample_test(x, y, n_permutations=0)
    with pytest.raises(TypeError, match="generator"):
        two_sample_test(x, y, generator=3)
    with pytest.raises(ValueError, match="statistic='mmd' only"):
        two_sample_test(x, y, statistic="energy", bandwidth=1.0)
    with pytest.raises(ValueError, match="same dimension"):
        two_sample_test(x, y[:, :1])
    with pytest.raises(ValueError, match="at least 2"):
        two_sample_test(x[:1], y)
    with pytest.raises(ValueError, match="> 0"):
        two_sample_test(x, y, bandwidth=0.0)
