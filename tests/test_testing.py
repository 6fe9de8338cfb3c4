"""Tests of ``labkit.testing``: every assertion passes on exact targets and fails on a planted
defect (a negative control), and every strategy produces valid objects.

False-failure rates. Deterministic checks (score vs autograd, Tweedie) compare float64 numbers
whose round-off is ~1e-12 relative against rtol=1e-6. Monte Carlo checks use fixed seeds, so they
are reproducible; the rate quoted beside each one is the probability that a correct target would
fail for a random seed (Bonferroni over the compared numbers). Negative controls are checked to
fail by a margin (their planted errors are many standard errors), stated next to each.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import scipy.special
import scipy.stats
import torch
from hypothesis import find, given, reject, settings
from hypothesis import strategies as st

import labkit.grids
from labkit import Gaussian, GaussianMixture, Sphere
from labkit.testing import (InsufficientSampleSizeError, KSDResult,
                            assert_denoiser_matches_monte_carlo, assert_finite,
                            assert_noised_samples_match, assert_order, assert_samples_match_score,
                            assert_score_matches_log_prob, assert_semigroup, assert_tweedie,
                            embedded_spheres, false_failure_bound, fit_order, gaussian_mixtures,
                            gaussians, ksd_test, points, sigma_grids, sigmas)
from labkit.testing.goodness_of_fit import stein_kernel_matrix

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Planted:
    """A target with some methods replaced: the planted defect of a negative control."""

    def __init__(self, target, **methods):
        self._target = target
        self.__dict__.update(methods)

    def __getattr__(self, name):
        return getattr(self._target, name)


# ------------------------------------------------------------------------------ fixed targets
MEANS = torch.tensor([[-2.0, 0.0], [2.0, 0.5], [0.0, 2.5]], dtype=F64)
COVS = torch.stack([torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=F64),
                    torch.diag(torch.tensor([0.4, 1.2], dtype=F64)),
                    0.6 * torch.eye(2, dtype=F64)])
WEIGHTS = torch.tensor([0.5, 0.3, 0.2], dtype=F64)
# Query points between and on the components, where the responsibilities matter.
X_MIX = torch.tensor([[0.0, 0.0], [1.0, 0.5], [-1.0, 1.0], [0.0, 1.5], [2.5, 0.0],
                      [-2.5, -0.5]], dtype=F64)


@pytest.fixture(scope="module")
def mixture() -> GaussianMixture:
    return GaussianMixture(MEANS, COVS, WEIGHTS)


@pytest.fixture(scope="module")
def circle() -> Sphere:
    """The unit circle S^1 in the first two coordinates of R^3 (the default basis)."""
    return Sphere(1, 3)


@pytest.fixture(scope="module")
def tilted_sphere() -> Sphere:
    return Sphere.random_subspace(2, 5, radius=1.5, generator=gen(3))


def x_circle(n: int = 6) -> torch.Tensor:
    """Points near the unit circle (radii 0.8..1.3) with a small off-plane component."""
    t = torch.linspace(0.0, 2 * math.pi, n + 1, dtype=F64)[:-1]
    r = torch.linspace(0.8, 1.3, n, dtype=F64)
    return torch.stack([r * t.cos(), r * t.sin(), torch.full_like(t, 0.2)], dim=1)


# ------------------------------------------------------------------------------ planted defects
def _noised_covs(sigma: float) -> torch.Tensor:
    return COVS + sigma ** 2 * torch.eye(2, dtype=F64)


def score_without_responsibilities(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """The bug: prior weights w_k where the responsibilities r_k(x) belong."""
    prec_diff = torch.linalg.solve(_noised_covs(sigma)[None], (MEANS[None] - x[:, None])[..., None])
    return (WEIGHTS[None, :, None] * prec_diff[..., 0]).sum(dim=1)


def score_forgetting_noise(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """The bug: the clean covariances S_k where C_k = S_k + sigma^2 I belong."""
    return GaussianMixture(MEANS, COVS, WEIGHTS).score(x, 0.0)


def tweedie(score):
    return lambda x, sigma: x + sigma ** 2 * score(x, sigma)


MIXTURE_DEFECTS = {"no_responsibilities": score_without_responsibilities,
                   "noise_forgotten": score_forgetting_noise}


def wrong_bessel_order_denoiser(radius: float, m: int):
    """Sphere denoiser in the first m coordinates with I_{nu+2}/I_{nu+1} for I_{nu+1}/I_nu."""
    nu = m / 2 - 1

    def denoise(x: torch.Tensor, sigma: float) -> torch.Tensor:
        xp = x[:, :m]
        r = xp.norm(dim=1, keepdim=True)
        z = (radius * r / sigma ** 2).numpy()
        ratio = torch.from_numpy(scipy.special.ive(nu + 2, z) / scipy.special.ive(nu + 1, z))
        out = torch.zeros_like(x)
        out[:, :m] = radius * ratio * xp / r
        return out

    return denoise


# ============================================================================== exact identities
@pytest.mark.parametrize("sigma", [0.0, 0.3, 2.0, torch.tensor([0.1, 0.5, 1.0, 2.0, 4.0, 8.0])])
def test_score_matches_log_prob_on_mixture(mixture, sigma):
    check = assert_score_matches_log_prob(mixture, X_MIX, sigma)
    assert check.max_violation <= 1.0


def test_score_matches_log_prob_on_sphere(tilted_sphere):
    x = tilted_sphere.sample_noised(8, 0.4, gen(0))
    assert_score_matches_log_prob(tilted_sphere, x, 0.4)


@pytest.mark.parametrize("defect", sorted(MIXTURE_DEFECTS))
def test_score_matches_log_prob_catches_planted_defect(mixture, defect):
    with pytest.raises(AssertionError, match=r"row \d+ of 6 is off by"):
        assert_score_matches_log_prob((mixture.log_prob, MIXTURE_DEFECTS[defect]), X_MIX, 0.5)


def test_score_matches_log_prob_follows_float32(mixture):
    # float32 round-off (~1e-7 relative) through log-sum-exp and solves: rtol 1e-3 is 1e4 ulps.
    x = X_MIX.to(torch.float32)
    assert_score_matches_log_prob(mixture, x, 0.5, rtol=1e-3, atol=1e-4)
    with pytest.raises(AssertionError):
        assert_score_matches_log_prob((mixture.log_prob, score_forgetting_noise), x, 0.5,
                                      rtol=1e-3, atol=1e-4)


def test_score_matches_log_prob_rejects_non_differentiable_log_prob(mixture):
    with pytest.raises(TypeError, match="differentiable"):
        assert_score_matches_log_prob((lambda x, s: mixture.log_prob(x, s).detach(),
                                       mixture.score), X_MIX, 0.5)


@pytest.mark.parametrize("sigma", [0.05, 1.0, torch.linspace(0.1, 3.0, 6, dtype=F64)])
def test_tweedie_holds_on_mixture(mixture, sigma):
    assert_tweedie(mixture, X_MIX, sigma)


def test_tweedie_holds_on_sphere(tilted_sphere):
    x = tilted_sphere.sample_noised(8, 0.4, gen(1))
    assert_tweedie(tilted_sphere, x, 0.4)


@pytest.mark.parametrize("defect", sorted(MIXTURE_DEFECTS))
def test_tweedie_catches_wrong_score(mixture, defect):
    with pytest.raises(AssertionError, match="Tweedie"):
        assert_tweedie(Planted(mixture, score=MIXTURE_DEFECTS[defect]), X_MIX, 0.5)


def test_tweedie_catches_scaled_sphere_denoiser(circle):
    with pytest.raises(AssertionError, match="Tweedie"):
        assert_tweedie((lambda x, s: circle.denoise(x, s) * 1.05, circle.score), x_circle(), 0.5)


def test_assert_finite():
    assert_finite(torch.ones(3, 2), "ones")
    assert_finite(torch.arange(4), "integers")
    t = torch.zeros(3, 2)
    t[1, 0], t[2, 1] = math.nan, math.inf
    with pytest.raises(AssertionError, match=r"scores has 2 non-finite entries of 6; first at "
                                             r"index \(1, 0\)"):
        assert_finite(t, "scores")


# ============================================================================== Monte Carlo
# Fixed seeds; a correct target fails for a random seed with probability at most
# false_failure_bound(4, rows * dims), e.g. 6 * 2 * 6.3e-5 = 7.6e-4 for the mixture.
@pytest.mark.parametrize("sigma", [0.7, torch.tensor([0.4, 0.6, 0.8, 1.0, 1.5, 2.0], dtype=F64)])
def test_denoiser_matches_monte_carlo_on_mixture(mixture, sigma):
    check = assert_denoiser_matches_monte_carlo(mixture, mixture, X_MIX, sigma, generator=gen(0))
    assert check.false_failure_bound == pytest.approx(false_failure_bound(4.0, 12))
    assert check.min_ess >= 100.0


@pytest.mark.parametrize("sphere", ["circle", "tilted_sphere"])
def test_denoiser_matches_monte_carlo_on_sphere(request, sphere):
    sphere = request.getfixturevalue(sphere)
    x = sphere.sample_noised(6, 0.4, gen(2))
    assert_denoiser_matches_monte_carlo(sphere, sphere, x, 0.4, generator=gen(3))


@pytest.mark.parametrize("defect", sorted(MIXTURE_DEFECTS))
def test_monte_carlo_catches_wrong_mixture_denoiser(mixture, defect):
    # Over 30 seeds the planted errors were >= 86 standard errors off, against z = 4.
    with pytest.raises(AssertionError, match="standard errors"):
        assert_denoiser_matches_monte_carlo(tweedie(MIXTURE_DEFECTS[defect]), mixture, X_MIX,
                                            0.7, generator=gen(0))


SPHERE_DEFECTS = {
    "scaled_by_1.05": lambda circle: (lambda x, s: circle.denoise(x, s) * 1.05),
    "radius_1.1": lambda circle: Sphere(1, 3, radius=1.1),
    "bessel_order_plus_1": lambda circle: wrong_bessel_order_denoiser(1.0, 2),
}


@pytest.mark.parametrize("defect", sorted(SPHERE_DEFECTS))
def test_monte_carlo_catches_wrong_sphere_denoiser(circle, defect):
    # sigma = 0.3 near the unit circle: over 30 seeds the smallest planted error (x 1.05) was
    # >= 74 standard errors at its worst coordinate, against the allowed z = 4.
    with pytest.raises(AssertionError, match="standard errors"):
        assert_denoiser_matches_monte_carlo(SPHERE_DEFECTS[defect](circle), circle, x_circle(),
                                            0.3, generator=gen(4))


def test_monte_carlo_refuses_to_decide_on_tiny_ess(mixture):
    far = torch.tensor([[30.0, -30.0]], dtype=F64)
    with pytest.raises(InsufficientSampleSizeError, match="effective sample size"):
        assert_denoiser_matches_monte_carlo(mixture, mixture, far, 0.05, generator=gen(0))


def test_semigroup_refuses_to_decide_on_tiny_ess(circle):
    # p_{0.01}(x + 1.0 eps) is a thin ridge around the circle: few eps land on it.
    with pytest.raises(InsufficientSampleSizeError, match="min_ess=100"):
        assert_semigroup(circle, x_circle(), 0.01, 1.0, generator=gen(0))


def test_monte_carlo_follows_float32(mixture):
    x = X_MIX.to(torch.float32)
    assert_denoiser_matches_monte_carlo(mixture, mixture, x, 0.7, atol=1e-5, generator=gen(0))


@pytest.mark.parametrize("s1, s2", [(0.5, 0.5), (1.0, 0.3), (0.8, 1.0)])
def test_semigroup_holds_on_mixture(mixture, s1, s2):
    # Fails for a random seed with probability <= 6 rows * 6.3e-5 = 3.8e-4.
    assert_semigroup(mixture, X_MIX, s1, s2, generator=gen(5))


def test_semigroup_holds_on_sphere(tilted_sphere):
    x = tilted_sphere.sample_noised(6, 0.8, gen(6))
    assert_semigroup(tilted_sphere, x, 0.6, 0.5, generator=gen(7))


@pytest.mark.parametrize("target", ["mixture", "tilted_sphere"])
def test_semigroup_catches_sigma_used_as_variance(request, target):
    # The bug: log_prob(x, sigma) adds noise of variance sigma, not sigma^2. At s1 = s2 = 0.5 the
    # claimed log-density is at 0.707 but the Monte Carlo one at sqrt(0.5 + 0.5) = 1.
    target = request.getfixturevalue(target)
    x = target.sample_noised(6, 0.7, gen(8))
    buggy = Planted(target, log_prob=lambda y, s: target.log_prob(y, torch.as_tensor(s).sqrt()))
    with pytest.raises(AssertionError, match="semigroup"):
        assert_semigroup(buggy, x, 0.5, 0.5, generator=gen(9))


# ============================================================================== goodness of fit
def _stein_kernel_by_autograd(x, y, sx, sy, kernel):
    x, y = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    k = kernel(x, y)
    gx, = torch.autograd.grad(k, x, create_graph=True)
    gy, = torch.autograd.grad(k, y, create_graph=True)
    trace = sum(torch.autograd.grad(gy[i], x, retain_graph=True)[0][i] for i in range(len(x)))
    return (sx @ sy) * k + sx @ gy + sy @ gx + trace


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
def test_stein_kernel_matches_autograd(kernel):
    ell, beta = 0.7, -0.5
    k = {"imq": lambda x, y: (1 + ((x - y) ** 2).sum() / ell ** 2) ** beta,
         "rbf": lambda x, y: torch.exp(-((x - y) ** 2).sum() / (2 * ell ** 2))}[kernel]
    g = gen(0)
    x, s = torch.randn(5, 3, generator=g, dtype=F64), torch.randn(5, 3, generator=g, dtype=F64)
    u = stein_kernel_matrix(x, s, kernel=kernel, bandwidth=ell, beta=beta)
    ref = torch.stack([torch.stack([_stein_kernel_by_autograd(x[i], x[j], s[i], s[j], k)
                                    for j in range(5)]) for i in range(5)])
    assert torch.allclose(u, ref, rtol=1e-10, atol=1e-12)  # same formula, float64 round-off


@pytest.mark.parametrize("kernel", ["imq", "rbf"])
def test_ksd_separates_right_and_wrong_score(kernel):
    # Right score: p is uniform under H0, so p < 1e-3 has probability ~1e-3 for a random seed.
    # Wrong score (N(0, 1.5^2 I) for N(0, I) samples): the statistic is far out of the bootstrap.
    x = torch.randn(400, 2, generator=gen(1), dtype=F64)
    right = ksd_test(x, lambda y: -y, kernel=kernel, generator=gen(2))
    wrong = ksd_test(x, lambda y: -y / 1.5 ** 2, kernel=kernel, generator=gen(2))
    assert isinstance(right, KSDResult) and right.n == 400
    assert right.p_value >= 1e-3
    assert wrong.p_value <= 2e-3  # the smallest p-value is 1/1001
    assert wrong.statistic > right.statistic >= -1e-12  # a V-statistic of a p.d. kernel is >= 0


def test_noised_samples_match_on_exact_targets(mixture, tilted_sphere):
    # Each fails for a random seed with probability ~alpha = 1e-3.
    assert_noised_samples_match(mixture, 0.3, generator=gen(10))
    assert_noised_samples_match(tilted_sphere, 0.3, generator=gen(11))


@pytest.mark.parametrize("defect", sorted(MIXTURE_DEFECTS))
def test_noised_samples_match_catches_wrong_mixture_score(mixture, defect):
    # At sigma = 2 and n = 500 both defects gave p = 1/4001 (the smallest possible) on each of
    # 10 seeds tried; KSD is weaker against small scale errors (see docs/testing.md).
    with pytest.raises(AssertionError, match=r"p = .* < alpha = 0.001"):
        assert_noised_samples_match(Planted(mixture, score=MIXTURE_DEFECTS[defect]), 2.0,
                                    generator=gen(12))


def test_noised_samples_match_catches_radius_mismatch(circle):
    # Radius 1.2 for 1 at sigma = 0.2: p = 1/4001 on each of 10 seeds tried.
    wrong = Sphere(1, 3, radius=1.2)
    with pytest.raises(AssertionError, match="Stein"):
        assert_noised_samples_match(Planted(circle, score=wrong.score), 0.2, generator=gen(13))


def test_samples_match_score_requires_enough_bootstrap():
    x = torch.randn(50, 1, generator=gen(0), dtype=F64)
    with pytest.raises(ValueError, match="n_bootstrap"):
        assert_samples_match_score(x, lambda y: -y, alpha=1e-3, n_bootstrap=500)


def _null_pvalues(seeds: range, n: int, mixture) -> list[float]:
    return [ksd_test(mixture.sample_noised(n, 0.5, gen(s)), lambda y: mixture.score(y, 0.5),
                     n_bootstrap=500, generator=gen(10_000 + s)).p_value for s in seeds]


def _assert_calibrated(pvalues: list[float], alpha: float) -> None:
    """Rejections ~ Binomial(m, alpha) under H0: accept the central 1 - 2e-3 of that law,
    and a KS test of uniformity at level 1e-3 (false-failure rate <= 3e-3 in all)."""
    m = len(pvalues)
    rejected = sum(p < alpha for p in pvalues)
    lo, hi = scipy.stats.binom.ppf([1e-3, 1 - 1e-3], m, alpha)
    assert lo <= rejected <= hi, (rejected, lo, hi)
    # Bootstrap p-values live on a 1/501 lattice; that discreteness is far below the KS scale.
    assert scipy.stats.kstest(pvalues, "uniform").pvalue > 1e-3


def test_ksd_calibrated_under_null(mixture):
    _assert_calibrated(_null_pvalues(range(50), 150, mixture), 0.1)


@pytest.mark.slow
def test_ksd_calibrated_under_null_thorough(mixture):
    _assert_calibrated(_null_pvalues(range(50, 350), 300, mixture), 0.05)


def test_calibration_check_can_fail(mixture):
    # Negative control of the calibration check: p-values under a wrong score are not uniform.
    wrong = [ksd_test(mixture.sample_noised(150, 0.5, gen(s)),
                      lambda y: score_without_responsibilities(y, 0.5), n_bootstrap=500,
                      generator=gen(s)).p_value for s in range(20)]
    with pytest.raises(AssertionError):
        _assert_calibrated(wrong, 0.1)


# ============================================================================== solver order
STEPS = [8, 16, 32, 64, 128]


def _pf_ode_errors(step, steps=STEPS, variance=2.0, sigma_max=10.0, sigma_min=0.1):
    """Global error of a one-step rule integrating the PF-ODE dx/dsigma = (x - D) / sigma for the
    target N(0, variance), whose exact flow is x(b) = x(a) sqrt((v + b^2) / (v + a^2))."""
    target = Gaussian(torch.zeros(1, dtype=F64), torch.full((1, 1), variance, dtype=F64))
    x0 = torch.tensor([[3.0]], dtype=F64)
    exact = x0 * math.sqrt((variance + sigma_min ** 2) / (variance + sigma_max ** 2))
    errors = []
    for n in steps:
        grid = torch.logspace(math.log10(sigma_max), math.log10(sigma_min), n + 1, dtype=F64)
        errors.append(float((_integrate(step, target, x0, grid) - exact).abs().max()))
    return errors


def _integrate(step, d, x, grid):
    for a, b in zip(grid[:-1].tolist(), grid[1:].tolist()):
        x = step(d, x, a, b)
    return x


def euler(d, x, a, b):
    return x + (b - a) * (x - d(x, a)) / a


def heun(d, x, a, b):
    k1 = (x - d(x, a)) / a
    x1 = x + (b - a) * k1
    return x + (b - a) * (k1 + (x1 - d(x1, b)) / b) / 2  # Apply 2nd order correction.


@pytest.mark.parametrize("step, order", [(euler, 1), (heun, 2)])
def test_assert_order_on_real_solvers(step, order):
    errors = _pf_ode_errors(step)
    fit = assert_order(errors, [1 / n for n in STEPS], order, tol=0.1)
    assert abs(fit.slope - order) <= 0.1


def test_assert_order_catches_euler_declared_second_order():
    errors = _pf_ode_errors(euler)
    with pytest.raises(AssertionError, match=r"observed order [01]\.\d+ differs from the declared "
                                             r"order 2"):
        assert_order(errors, [1 / n for n in STEPS], 2, tol=0.25)


def test_fit_order_is_exact_on_a_power_law():
    h = torch.tensor([0.1, 0.05, 0.025, 0.0125], dtype=F64)
    fit = fit_order(3.0 * h ** 1.5, h)
    assert fit.slope == pytest.approx(1.5, abs=1e-12)
    assert fit.intercept == pytest.approx(math.log(3.0), abs=1e-12)
    assert all(s == pytest.approx(1.5, abs=1e-12) for s in fit.local_slopes)


def test_assert_order_synthetic_euler_like_sequence():
    h = [0.2, 0.1, 0.05, 0.025]
    errors = [2.0 * t * (1 + 0.3 * t) for t in h]  # first order with a second-order term
    assert_order(errors, h, 1, tol=0.2)
    with pytest.raises(AssertionError, match="slope to next"):
        assert_order(errors, h, 2, tol=0.2)


@pytest.mark.parametrize("errors, steps, match", [
    ([1e-2, 0.0], [0.1, 0.05], "errors must be finite and > 0"),
    ([1e-2], [0.1], "at least 2"),
    ([1e-2, 1e-3], [0.1], "same length"),
    ([1e-2, 1e-3], [0.1, 0.1], "distinct"),
])
def test_fit_order_rejects_bad_input(errors, steps, match):
    with pytest.raises(ValueError, match=match):
        fit_order(errors, steps)


# ============================================================================== strategies
@given(gaussian_mixtures(), sigmas(1e-3, 1e2), st.data())
def test_generated_mixtures_are_valid(mixture, sigma, data):
    x = data.draw(points(mixture))
    k, d = mixture.means.shape
    assert 1 <= k <= 4 and 1 <= d <= 6
    assert float(mixture.weights.min()) >= 0.2 / (0.2 + (k - 1)) - 1e-12
    assert float(mixture.weights.sum()) == pytest.approx(1.0, abs=1e-12)
    eig = torch.linalg.eigvalsh(mixture.covs)  # round-off of U diag(l) U^T is ~1e-15
    nonzero = eig[eig > 1e-9]
    assert bool((eig > -1e-9).all())
    assert bool(((nonzero >= 0.1 - 1e-9) & (nonzero <= 4.0 + 1e-9)).all())
    assert_finite(mixture.log_prob(x, sigma), "log_prob")
    assert_score_matches_log_prob(mixture, x, sigma)
    assert_tweedie(mixture, x, sigma)


@pytest.mark.parametrize("kind", ["full", "diagonal", "isotropic", "low_rank"])
@given(data=st.data())
def test_covariance_kinds(kind, data):
    mixture = data.draw(gaussian_mixtures(dim=st.integers(2, 5), covariance=(kind,)))
    covs = mixture.covs
    d = covs.shape[-1]
    off_diagonal = covs - torch.diag_embed(torch.diagonal(covs, dim1=-2, dim2=-1))
    rank = torch.linalg.matrix_rank(covs, hermitian=True, atol=1e-9)
    if kind in ("diagonal", "isotropic"):
        assert float(off_diagonal.abs().max()) == 0.0
    if kind == "isotropic":
        diag = torch.diagonal(covs, dim1=-2, dim2=-1)
        assert torch.equal(diag, diag[:, :1].expand_as(diag))
    if kind == "low_rank":
        assert bool(((rank >= 1) & (rank < d)).all())
    else:
        assert bool((rank == d).all())


@given(gaussian_mixtures(dim=3, max_components=3, labelled=True), st.data())
def test_labelled_mixtures(mixture, data):
    x = data.draw(points(mixture, n=4))
    post = mixture.class_posterior(x, 0.5)
    assert_finite(post, "class_posterior")
    assert torch.allclose(post.sum(dim=1), torch.ones(4, dtype=F64), atol=1e-12)


@given(gaussians(dim=st.integers(1, 4)), sigmas(1e-2, 1e2), st.data())
def test_generated_gaussians_are_valid(gaussian, sigma, data):
    x = data.draw(points(gaussian, n=5))
    assert_finite(gaussian.log_prob(x, sigma), "log_prob")
    assert_score_matches_log_prob(gaussian, x, sigma)


@given(embedded_spheres(random_subspace=st.booleans()), sigmas(1e-2, 10.0), st.data())
def test_generated_spheres_are_valid(sphere, sigma, data):
    x0 = sphere.sample(16, gen(0))
    radius = float(x0.norm(dim=1).mean())
    assert 0.5 - 1e-9 <= radius <= 2.0 + 1e-9
    assert torch.allclose(x0.norm(dim=1), torch.full((16,), radius, dtype=F64), rtol=1e-10)
    x = data.draw(points(sphere))
    assert_finite(sphere.denoise(x, sigma), "denoise")
    assert_tweedie(sphere, x, sigma)


@given(sigmas())
def test_sigmas_in_range(sigma):
    assert isinstance(sigma, float) and 1e-4 <= sigma <= 1e3


@given(sigma_grids())
def test_sigma_grids_follow_the_solver_rules(grid):
    assert grid.ndim == 1 and 2 <= grid.numel() <= 65
    assert_finite(grid, "grid")
    assert bool((grid[:-1] > grid[1:]).all())
    assert bool((grid[:-1] > 0).all()) and float(grid[-1]) >= 0.0
    assert float(grid[0]) >= 1.0 - 1e-12 and float(grid[0]) <= 100.0 + 1e-9
    labkit.grids.validate(grid)  # the solver layer accepts it


@given(sigma_grids(min_steps=56, max_steps=64, sigma_min_range=(1.0, 1.0),
                   sigma_max_range=(1.001, 1.001), final_zero=False, dtype=torch.float32))
def test_sigma_grids_strict_in_float32_at_the_narrowest_range(grid):
    assert grid.dtype == torch.float32 and 57 <= grid.numel() <= 65
    labkit.grids.validate(grid)


@given(embedded_spheres(max_k=1, max_ambient_dim=3), st.data())
def test_points_include_near_and_far(sphere, data):
    x = data.draw(points(sphere, n=8, spread=1.0, far=20.0))
    assert x.shape == (8, sphere.dim)
    # |offset| <= far * sqrt(d) beyond the sphere of radius <= 2.
    assert float(x.norm(dim=1).max()) <= 2.0 + 20.0 * math.sqrt(sphere.dim) + 1e-9


def test_points_reach_far_out():
    # hypothesis.find raises NoSuchExample if no drawn point is more than 5 from the origin.
    x = find(points(Sphere(1, 2), n=1, spread=1.0, far=20.0), lambda x: float(x.norm()) > 5.0,
             settings=settings(database=None, max_examples=200))
    assert float(x.norm()) > 5.0


@pytest.mark.parametrize("make, match", [
    (lambda: gaussian_mixtures(covariance=("bogus",)), "covariance"),
    (lambda: gaussian_mixtures(dim=0), "dim"),
    (lambda: gaussian_mixtures(eigenvalue_range=(0.0, 1.0)), "eigenvalue_range"),
    (lambda: sigmas(1.0, 0.1), "min_value"),
    (lambda: sigma_grids(min_steps=5, max_steps=2), "min_steps"),
    (lambda: sigma_grids(sigma_min_range=(0.5, 2.0), sigma_max_range=(1.0, 3.0)), "sigma_min"),
    (lambda: points(Sphere(1, 2), spread=3.0, far=1.0), "spread"),
])
def test_strategy_arguments_are_validated(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.slow
@given(gaussian_mixtures(dim=st.integers(1, 2), max_components=3,
                         covariance=("full", "diagonal", "isotropic")),
       sigmas(0.5, 3.0), st.integers(0, 2 ** 31 - 1))
def test_generated_mixture_denoisers_match_monte_carlo(mixture, sigma, seed):
    # z = 5: <= 4 rows * 2 coords * 5.7e-7 = 4.6e-6 per example.
    x = mixture.sample_noised(4, sigma, gen(seed))
    try:
        assert_denoiser_matches_monte_carlo(mixture, mixture, x, sigma, z=5.0, n_mc=40_000,
                                            generator=gen(seed + 1))
    except InsufficientSampleSizeError:
        reject()


# ============================================================================== documentation
def _docs_example() -> dict:
    text = (Path(__file__).resolve().parents[1] / "docs" / "testing.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1, "docs/testing.md should have exactly one python example block"
    namespace: dict = {}
    exec(compile(blocks[0], "<docs/testing.md>", "exec"), namespace)
    return namespace


def test_docs_example_runs():
    namespace = _docs_example()
    tests = [f for name, f in namespace.items() if name.startswith("test_")]
    assert len(tests) == 5
    for test in tests:
        test()


def test_docs_example_order_test_can_fail():
    # Negative control: Heun (second order) in place of the user's Euler fails the order test.
    namespace = _docs_example()
    namespace["my_euler"] = lambda d, x, sigmas: _integrate(heun, d, x, sigmas)
    with pytest.raises(AssertionError, match="declared order 1"):
        namespace["test_my_solver_is_first_order"]()


@pytest.mark.parametrize("call, error, match", [
    (lambda m: assert_tweedie(m, X_MIX[0], 0.5), ValueError, "shape"),
    (lambda m: assert_tweedie(m, X_MIX.numpy(), 0.5), TypeError, "x must be a torch.Tensor"),
    (lambda m: assert_tweedie(m, X_MIX, 0.0), ValueError, "sigma must be .*> 0"),
    (lambda m: assert_score_matches_log_prob((m.log_prob,), X_MIX), TypeError, "pair"),
    (lambda m: assert_denoiser_matches_monte_carlo(m, m, X_MIX, 0.5, z=0.0), ValueError, "z"),
    (lambda m: assert_semigroup(m, X_MIX, 0.5, 0.5, n_mc=1), ValueError, "n_mc"),
    (lambda m: ksd_test(X_MIX, lambda y: -y, kernel="cosine"), ValueError, "kernel"),
])
def test_assertion_arguments_are_validated(mixture, call, error, match):
    with pytest.raises(error, match=match):
        call(mixture)


def test_monte_carlo_posterior_mean_z_scores_are_standard_normal():
    """The public estimator's standard error is calibrated: for a 1-D Gaussian prior the exact
    posterior mean is known, and with independent draws per row the RMS z-score over 400 rows
    is 1 within its sampling spread (sd of an RMS of 400 chi-square(1) values ~ 0.035; 0.8-1.2
    is > 5 sd wide)."""
    import labkit
    from labkit.testing import monte_carlo_posterior_mean

    g = torch.Generator().manual_seed(5)
    prior = labkit.Gaussian(torch.tensor([0.5]), torch.tensor([[2.0]]))
    x = prior.sample_noised(400, 1.0, g)
    est = monte_carlo_posterior_mean(prior, x, 1.0, n_mc=4000, independent=True, generator=g)
    exact = 0.5 + 2.0 / 3.0 * (x - 0.5)
    rms_z = float(((est.mean - exact) / est.stderr).square().mean().sqrt())
    assert 0.8 < rms_z < 1.2
    assert float(est.ess.median()) > 100  # tail rows have small ESS; the bulk must not
    # Negative control: the same z-scores against a wrong posterior mean are far from 1.
    wrong = 0.5 + 0.6 * (x - 0.5)
    assert float(((est.mean - wrong) / est.stderr).square().mean().sqrt()) > 2.0
