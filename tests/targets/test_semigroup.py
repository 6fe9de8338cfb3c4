"""Semigroup identity ``E_eps[p_s1(x + s2 eps)] = p_sqrt(s1^2 + s2^2)(x)`` on every kind of
target, by Monte Carlo (:func:`labkit.testing.assert_semigroup`), with a negative control.

The identity ties each target's ``log_prob`` at two noise levels together through samples of
``N(0, I)`` alone, so it checks the noised density independently of how it was derived (for
the Gaussian mixture: not ``noised()`` against itself).

**False-failure rate.** ``assert_semigroup`` allows ``z = 4`` standard errors per row, so a row
fails by chance with probability ``erfc(4 / sqrt 2) = 6.3e-5`` in the normal limit (ESS >= 100
is enforced, which keeps the log-of-mean bias ``se^2 / 2`` negligible). With
``ROWS = 4`` rows, 2 noise pairs and 5 targets, a random seed fails with probability
``<= 40 * 6.3e-5 = 2.5e-3``; the seeds are fixed, so the suite is deterministic.
"""

import math

import pytest
import torch

from labkit.targets import Curve, Embedded, Empirical, GaussianMixture, Product, Sphere
from labkit.testing import assert_semigroup

F64 = torch.float64
ROWS = 4
N_MC = 4000  # per row; standard errors ~1e-2 in log units, quadrature errors (<= 1e-8) vanish
# (sigma1, sigma2): sigma1 not much below sigma2 keeps the ESS well above 100 on the singular
# targets (the MC points must land near the support's sigma1-neighbourhood).
SIGMA_PAIRS = [(0.5, 0.5), (0.4, 0.3)]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _low_rank_mixture() -> GaussianMixture:
    # Three components in R^3 of ranks 1, 2 and 0 (a segment, a flat disc and an atom).
    u = torch.tensor([1.0, 2.0, -1.0], dtype=F64)
    v = torch.tensor([0.0, 1.0, 1.0], dtype=F64)
    covs = torch.stack([0.3 * torch.outer(u, u) / 6,
                        0.5 * (torch.outer(u, u) / 6 + torch.outer(v, v) / 2),
                        torch.zeros(3, 3, dtype=F64)])
    means = torch.tensor([[-1.0, 0.0, 0.5], [1.0, 0.5, 0.0], [0.0, -1.0, -0.5]], dtype=F64)
    return GaussianMixture(means, covs, torch.tensor([0.5, 0.3, 0.2], dtype=F64))


TARGETS = {
    "helix": lambda: Curve.helix(turns=1.0),
    "empirical": lambda: Empirical(torch.randn(7, 3, generator=gen(1), dtype=F64)),
    "embedded_circle": lambda: Embedded.random(Curve.circle(), 4, generator=gen(2)),
    "torus": lambda: Product(Sphere(1, 2), Sphere(1, 2, radius=0.5)),
    "low_rank_mixture": _low_rank_mixture,
}


@pytest.fixture(scope="module", params=sorted(TARGETS))
def target(request):
    return TARGETS[request.param]()


class SigmaAsVariance:
    """Planted defect: ``log_prob(x, sigma)`` noises with variance ``sigma`` (not ``sigma^2``)."""

    def __init__(self, target):
        self.target, self.dim = target, target.dim

    def log_prob(self, x, sigma):
        return self.target.log_prob(x, torch.as_tensor(sigma, dtype=x.dtype).sqrt())


def test_low_rank_mixture_is_singular():
    # The case of interest: components without a density on R^3 (ranks 1, 2, 0).
    mixture = _low_rank_mixture()
    assert torch.linalg.matrix_rank(mixture.covs, hermitian=True).tolist() == [1, 2, 0]
    assert not mixture.has_density


@pytest.mark.parametrize("s1, s2", SIGMA_PAIRS)
def test_semigroup_holds(target, s1, s2):
    x = target.sample_noised(ROWS, math.hypot(s1, s2), gen(3))
    check = assert_semigroup(target, x, s1, s2, n_mc=N_MC, generator=gen(4))
    assert check.min_ess >= 100 and check.max_violation <= 1


def test_semigroup_catches_sigma_used_as_variance(target):
    # At (s1, s2) = (0.2, 0.5) the defect claims the level (s1^2 + s2^2)^(1/4) = 0.73 while the
    # Monte Carlo average is at sqrt(s1 + s2^2) = 0.67: a log-density gap >> 4 standard errors.
    x = target.sample_noised(ROWS, 0.7, gen(5))
    with pytest.raises(AssertionError, match="semigroup"):
        assert_semigroup(SigmaAsVariance(target), x, 0.2, 0.5, n_mc=N_MC, generator=gen(6))
