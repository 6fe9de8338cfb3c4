"""Mode weights by exact responsibilities and their total-variation error."""

import math

import numpy as np
import pytest
import torch

import labkit
from labkit.metrics.mixture import mode_weight_error, mode_weight_error_null, mode_weights

MEANS = torch.tensor([[-4.0, 0.0], [4.0, 0.0], [0.0, 5.0]])
WEIGHTS = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)


def mixture(weights=WEIGHTS, covs=0.5):
    return labkit.GaussianMixture(MEANS, covs, weights=weights)


def draw(mix, n, seed):
    return mix.sample(n, generator=torch.Generator().manual_seed(seed))


def test_mode_weights_recover_exact_weights():
    mix = mixture()
    est = mode_weights(draw(mix, 5000, 0), mix)
    assert len(est) == 3 and all(e.n == 5000 for e in est)
    for e, w in zip(est, WEIGHTS.tolist()):
        # Fixed seed; 4 CLT standard errors: a 6e-5 false-failure rate per mode.
        assert abs(e.value - w) < 4 * e.stderr
        assert e.contains(w)
    assert sum(e.value for e in est) == pytest.approx(1.0, abs=1e-12)


def test_mode_weight_interval_coverage():
    # 300 independent sets of 200 exact samples (overlapping modes: soft responsibilities).
    mix = mixture(covs=4.0)
    x = draw(mix, 300 * 200, 1).reshape(300, 200, 2)
    covered = np.array([[e.contains(w) for e, w in zip(mode_weights(s, mix), WEIGHTS.tolist())]
                        for s in x])
    # Nominal 95%, conservative for soft responsibilities; with 300 sets a coverage below 0.9
    # would be 4 binomial standard errors (sqrt(.95 * .05 / 300) = 0.0126) under nominal.
    assert covered.mean(axis=0).min() >= 0.9
    # Negative control: the same intervals around weights shifted by 0.1 cover far less often.
    shifted = np.array([[e.contains(w + 0.1) for e, w in zip(mode_weights(s, mix),
                                                              WEIGHTS.tolist())] for s in x[:50]])
    assert shifted.mean() < 0.5


def test_dropped_mode_is_detected():
    mix = mixture()
    dropped = mixture(weights=torch.tensor([0.0, 0.3, 0.5]))
    x = draw(dropped, 2000, 2)
    est = mode_weights(x, mix)
    # Far-apart modes: nothing lands in mode 0, and the Wilson interval stays non-degenerate.
    assert est[0].value < 1e-6 and 0 < est[0].interval[1] < 0.01
    assert not est[0].contains(WEIGHTS[0])
    err, null = mode_weight_error(x, mix), mode_weight_error_null(mix, 2000, reps=50)
    # TV to the truth: mode 0 misses 0.2, the others gain 0.2 -> 0.2.
    assert err.value == pytest.approx(0.2, abs=0.02)
    assert err.interval[0] > null.interval[1]


def test_wrong_weights_are_detected_and_exact_samples_are_not():
    mix = mixture()
    wrong = mixture(weights=torch.tensor([0.25, 0.25, 0.5]))
    n = 4000
    null = mode_weight_error_null(mix, n, reps=100)
    bad, good = mode_weight_error(draw(wrong, n, 3), mix), mode_weight_error(draw(mix, n, 3), mix)
    assert bad.value == pytest.approx(0.05, abs=0.02) and bad.interval[0] > null.interval[1]
    # Exact samples: the plug-in TV is of the size of the null reference, not 0 (its bias);
    # 5 times the null mean is far in the tail of its (half-normal-like) distribution.
    assert 0 < good.value < 5 * null.value


def test_null_reference_matches_half_normal_formula():
    # Well-separated modes (hard responsibilities): w_hat - w ~ N(0, w(1 - w) / n), so
    # E[TV] ~ 0.5 sum_k sqrt(2 w_k (1 - w_k) / (pi n)), the O(sqrt(K / n)) bias in the docs.
    mix, n = mixture(covs=0.1), 1000
    null = mode_weight_error_null(mix, n, reps=400)
    w = WEIGHTS.numpy()
    formula = 0.5 * np.sum(np.sqrt(2 * w * (1 - w) / (math.pi * n)))
    # The normal approximation of the binomial is accurate to a few % at n = 1000: 4 standard
    # errors plus 3% of the value.
    assert abs(null.value - formula) < 4 * null.stderr + 0.03 * formula
    # Negative control: the bias does shrink like 1/sqrt(n) (4x the samples, half the error).
    quarter = mode_weight_error_null(mix, 4 * n, reps=400,
                                     generator=torch.Generator().manual_seed(5))
    assert quarter.value / null.value == pytest.approx(0.5, abs=0.08)


def test_singular_components_need_sigma_and_single_gaussian():
    line = labkit.GaussianMixture(MEANS, torch.tensor([[1.0, 0.0]] * 3), weights=WEIGHTS)
    x = draw(line, 500, 4)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        mode_weights(x, line)
    est = mode_weights(x, line, sigma=1e-3)
    # 4 standard errors per mode (fixed seed; 6e-5 false failures each).
    assert all(abs(e.value - w) < 4 * e.stderr for e, w in zip(est, WEIGHTS.tolist()))
    g = labkit.Gaussian(torch.zeros(2), 1.0)
    (only,) = mode_weights(draw(g, 100, 5), g)
    assert only.value == 1.0 and mode_weight_error(draw(g, 100, 5), g).value == 0.0


@pytest.mark.parametrize("samples, target, exc, match", [
    (torch.zeros(10, 2), labkit.Sphere(1, 2), TypeError,
     "mixture must be a labkit.GaussianMixture"),
    (torch.zeros(10, 3), None, ValueError, r"samples must have shape \(n, 2\)"),
    (torch.full((10, 2), float("nan")), None, ValueError, "samples must be finite"),
    (torch.zeros(10), None, ValueError, "reshape 1-D data"),
    ("abc", None, TypeError, "samples must be a tensor or array"),
])
@pytest.mark.parametrize("fn", [mode_weights, mode_weight_error])
def test_bad_input(fn, samples, target, exc, match):
    with pytest.raises(exc, match=match):
        fn(samples, mixture() if target is None else target)


def test_bad_options():
    mix = mixture()
    with pytest.raises(ValueError, match="level must be in"):
        mode_weights(torch.zeros(5, 2), mix, level=1.5)
    with pytest.raises(ValueError, match="n_boot must be >= 10"):
        mode_weight_error(torch.zeros(5, 2), mix, n_boot=3)
    with pytest.raises(ValueError, match="reps must be >= 2"):
        mode_weight_error_null(mix, 10, reps=1)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        mode_weight_error_null(mix, 10, generator=3)
