"""Tests of ``Gaussian`` and ``GaussianMixture`` against independent references.

References: ``torch.distributions`` (Cholesky-based densities), autograd of ``log_prob``, the
posterior-mean formula evaluated with ``torch.linalg.solve``, self-normalised Monte Carlo, sample
moments. Each family of checks has a negative control that plants a wrong formula.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from labkit import Gaussian, GaussianMixture

F64 = torch.float64
KINDS = ("full", "diagonal", "isotropic", "low_rank")


# ---------------------------------------------------------------------------- helpers
def make_mixture(seed: int, k: int, d: int, kind: str, labels=None) -> GaussianMixture:
    """A random mixture; ``low_rank`` components have rank d // 2 (point masses when d = 1)."""
    g = torch.Generator().manual_seed(seed)
    means = 2.0 * torch.randn(k, d, generator=g, dtype=F64)
    if kind == "full":
        a = torch.randn(k, d, d, generator=g, dtype=F64)
        covs = a @ a.transpose(1, 2) / d + 0.05 * torch.eye(d, dtype=F64)
    elif kind == "diagonal":
        covs = 1.5 * torch.rand(k, d, generator=g, dtype=F64) + 0.05
    elif kind == "isotropic":
        covs = torch.rand(k, generator=g, dtype=F64) + 0.05
    else:
        a = torch.randn(k, d, d // 2, generator=g, dtype=F64)
        covs = a @ a.transpose(1, 2)
    weights = torch.rand(k, generator=g, dtype=F64) + 0.1
    return GaussianMixture(means, covs, weights, labels)


def noisy_points(mix: GaussianMixture, sigma: torch.Tensor, seed: int = 1) -> torch.Tensor:
    """Rows ``x0 + sigma_i eps_i`` (one sigma per row) plus one far-away row."""
    g = torch.Generator().manual_seed(seed)
    n = sigma.shape[0]
    x = mix.sample(n, g) + sigma[:, None] * torch.randn(n, mix.dim, generator=g, dtype=F64)
    x[-1] = 10.0 + 5.0 * torch.randn(mix.dim, generator=g, dtype=F64)
    return x


def full_sigma(sigma, n: int) -> torch.Tensor:
    return sigma if isinstance(sigma, torch.Tensor) else torch.full((n,), float(sigma), dtype=F64)


def reference_component_log_probs(mix: GaussianMixture, x: torch.Tensor, sigma) -> torch.Tensor:
    """``log w_k + log N(x; m_k, S_k + sigma_i^2 I)`` of shape (n, K) via torch.distributions."""
    s = full_sigma(sigma, x.shape[0])
    eye = torch.eye(mix.dim, dtype=F64)
    covs = mix.covs[None] + (s ** 2)[:, None, None, None] * eye  # (n, K, d, d)
    normal = torch.distributions.MultivariateNormal(mix.means.expand(len(s), -1, -1), covs)
    return mix.weights.log() + normal.log_prob(x[:, None, :])


def reference_denoiser(mix: GaussianMixture, x: torch.Tensor, sigma) -> torch.Tensor:
    """Posterior mean ``sum_k r_k [m_k + S_k C_k^{-1} (x - m_k)]`` with ``linalg.solve``."""
    s = full_sigma(sigma, x.shape[0])
    r = torch.softmax(reference_component_log_probs(mix, x, s), dim=1)
    covs = mix.covs[None] + (s ** 2)[:, None, None, None] * torch.eye(mix.dim, dtype=F64)
    solved = torch.linalg.solve(covs, (x[:, None, :] - mix.means)[..., None])  # (n, K, d, 1)
    means = mix.means + (mix.covs[None] @ solved)[..., 0]
    return (r[..., None] * means).sum(dim=1)


def assert_rows_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float) -> None:
    """Every row within ``rtol`` of the expected row's norm (scores span 1e-3 to 1e9)."""
    assert bool(torch.isfinite(actual).all()), "non-finite entries"
    scale = expected.norm(dim=1, keepdim=True).clamp_min(1e-300)
    torch.testing.assert_close(actual / scale, expected / scale, rtol=0.0, atol=rtol)


def autograd_score(mix: GaussianMixture, x: torch.Tensor, sigma) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(mix.log_prob(x, sigma).sum(), x)
    return grad


# float64: the score and the gradient of log_prob share the centring y = U^T x - U^T m, whose
# round-off (eps |x| ~ 1e-15) is divided by l + sigma^2 >= 1e-8 in both; measured row-relative
# differences are <= 3.4e-12 over 300 random mixtures of this file's families with sigma in
# [1e-4, 1e3]. 1e-9 leaves a 300x margin, while formula errors (a wrong covariance, missing
# responsibilities) give O(1e-2) or more.
SCORE_RTOL = 1e-9


def assert_score_is_gradient(score_fn, mix: GaussianMixture, x: torch.Tensor, sigma) -> None:
    assert_rows_close(score_fn(x, sigma), autograd_score(mix, x, sigma), SCORE_RTOL)


mixtures = st.builds(make_mixture, seed=st.integers(0, 2 ** 16), k=st.integers(1, 4),
                     d=st.integers(1, 5), kind=st.sampled_from(KINDS))
log_sigmas = st.floats(-4.0, 3.0)


# ---------------------------------------------------------------------------- log_prob
@pytest.mark.parametrize("kind", ["full", "diagonal", "isotropic"])
@pytest.mark.parametrize("sigma", [0.0, 0.7, "per_row"])
def test_log_prob_matches_torch_distributions(kind, sigma):
    mix = make_mixture(0, k=3, d=4, kind=kind)
    if sigma == "per_row":
        sigma = torch.tensor([0.0, 0.01, 0.3, 1.0, 3.0, 30.0], dtype=F64)
    x = noisy_points(mix, full_sigma(sigma, 6))
    expected = torch.logsumexp(reference_component_log_probs(mix, x, sigma), dim=1)
    # Cholesky vs eigendecomposition round-off: O(d cond(C) eps) ~ 1e-13 for cond(C) < 1e3.
    torch.testing.assert_close(mix.log_prob(x, sigma), expected, rtol=1e-10, atol=1e-10)


def test_gaussian_matches_multivariate_normal_and_parses_cov_forms():
    mean = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    diag = torch.tensor([0.5, 2.0, 1.0], dtype=F64)
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    noised_cov = torch.diag(diag) + 0.09 * torch.eye(3, dtype=F64)
    expected = torch.distributions.MultivariateNormal(mean, noised_cov)
    for cov in (torch.diag(diag), diag):
        g = Gaussian(mean, cov)
        torch.testing.assert_close(g.log_prob(x, 0.3), expected.log_prob(x), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(g.cov, torch.diag(diag), rtol=0, atol=0)
    iso = Gaussian(mean, 2.0)
    torch.testing.assert_close(iso.cov, 2.0 * torch.eye(3, dtype=F64), rtol=0, atol=0)
    torch.testing.assert_close(iso.mean, mean, rtol=0, atol=0)
    torch.testing.assert_close(iso.covariance, iso.cov, rtol=0, atol=0)
    assert isinstance(iso.noised(1.0), Gaussian)
    torch.testing.assert_close(iso.noised(1.0).cov, 3.0 * torch.eye(3, dtype=F64),
                               rtol=1e-15, atol=0)


def test_weights_are_normalised_and_zero_weight_components_vanish():
    means = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]], dtype=F64)
    full = GaussianMixture(means, 0.5, weights=[2.0, 6.0, 0.0])
    torch.testing.assert_close(full.weights, torch.tensor([0.25, 0.75, 0.0], dtype=F64),
                               rtol=0, atol=1e-16)
    reduced = GaussianMixture(means[:2], 0.5, weights=[1.0, 3.0])
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    for sigma in (0.0, 0.4, torch.linspace(0.1, 2.0, 5, dtype=F64)):
        torch.testing.assert_close(full.log_prob(x, sigma), reduced.log_prob(x, sigma),
                                   rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(full.score(x, sigma), reduced.score(x, sigma),
                                   rtol=1e-13, atol=1e-13)


# ---------------------------------------------------------------------------- score
@given(mix=mixtures, log_sigma=log_sigmas, spread=st.floats(0.0, 3.0), per_row=st.booleans())
def test_score_is_gradient_of_log_prob(mix, log_sigma, spread, per_row):
    # per_row exercises the eigen route, one shared sigma the precision route.
    offsets = torch.linspace(-spread, spread, 6, dtype=F64) * float(per_row)
    sigma = 10.0 ** (log_sigma + offsets).clamp(-4.0, 3.0)
    x = noisy_points(mix, sigma)
    assert bool(torch.isfinite(mix.log_prob(x, sigma)).all())
    assert bool(torch.isfinite(autograd_score(mix, x, sigma)).all())
    assert_score_is_gradient(mix.score, mix, x, sigma)


def test_score_check_detects_planted_errors():
    mix = make_mixture(3, k=3, d=3, kind="full")
    sigma = 0.5
    x = noisy_points(mix, full_sigma(sigma, 6))
    eye = torch.eye(3, dtype=F64)

    def per_component(x, covs):  # C_k^{-1} (m_k - x), shape (n, K, d)
        return torch.linalg.solve(covs, (mix.means - x[:, None, :])[..., None])[..., 0]

    def clean_covariance_score(x, sigma):  # S_k^{-1} where C_k^{-1} belongs
        r = mix.responsibilities(x, sigma)
        return (r[..., None] * per_component(x, mix.covs)).sum(dim=1)

    def prior_weighted_score(x, sigma):  # weights w_k instead of responsibilities r_k(x)
        return (mix.weights[:, None] * per_component(x, mix.covs + sigma ** 2 * eye)).sum(dim=1)

    assert_score_is_gradient(mix.score, mix, x, sigma)
    for wrong in (clean_covariance_score, prior_weighted_score):
        with pytest.raises(AssertionError):
            assert_score_is_gradient(wrong, mix, x, sigma)


def test_per_row_sigma_equals_rowwise_scalar_calls():
    mix = make_mixture(4, k=3, d=3, kind="low_rank")
    sigma = torch.tensor([0.01, 0.5, 0.5, 2.0, 40.0, 0.2], dtype=F64)
    x = noisy_points(mix, sigma)
    for method in (mix.log_prob, mix.score, mix.denoise, mix.responsibilities):
        rowwise = torch.cat([method(x[i:i + 1], float(sigma[i])) for i in range(6)])
        # Eigen route (vector) vs precision route (scalar): float64 round-off of two algebraically
        # equal evaluations, scaled by cond(C) <= (max l + 0.01^2) / 0.01^2 ~ 1e5.
        torch.testing.assert_close(method(x, sigma), rowwise, rtol=1e-9, atol=1e-9)


def test_chunking_does_not_change_results():
    mix = make_mixture(5, k=4, d=3, kind="full", labels=[0, 1, 0, 1])
    sigma = torch.linspace(0.1, 3.0, 50, dtype=F64)
    x = noisy_points(mix, sigma)
    classes = torch.arange(50) % 2
    whole = [mix.score(x, sigma), mix.denoise(x, sigma), mix.class_score(x, sigma, classes)]
    mix.chunk_size = 7
    chunked = [mix.score(x, sigma), mix.denoise(x, sigma), mix.class_score(x, sigma, classes)]
    for a, b in zip(whole, chunked):
        torch.testing.assert_close(a, b, rtol=1e-14, atol=1e-14)


def test_chunk_size_bounds_the_intermediate_memory():
    for k, d in ((1, 1), (16, 2), (16, 64), (1 << 17, 4)):
        mix = GaussianMixture(torch.zeros(k, d, dtype=F64), 1.0)
        assert 1 <= mix.chunk_size
        assert mix.chunk_size * k * d * 8 <= 16 << 20  # one (rows, K, d) float64 block


# ---------------------------------------------------------------------------- denoiser
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sigma", [1e-3, 0.3, 10.0, 1e3, "per_row"])
def test_denoiser_matches_tweedie_and_posterior_mean(kind, sigma):
    mix = make_mixture(6, k=3, d=4, kind=kind)
    if sigma == "per_row":
        sigma = torch.tensor([1e-3, 0.05, 0.3, 1.0, 10.0, 1e3], dtype=F64)
    x = noisy_points(mix, full_sigma(sigma, 6))
    s = full_sigma(sigma, 6)
    denoised = mix.denoise(x, sigma)
    # Tweedie x + sigma^2 score cancels to |D| out of |x| ~ sigma: its float64 error is
    # ~ eps |x| cond(C); 1e-9 (|x| + 1) bounds it with margin for sigma <= 1e3, |x| <= 1e4.
    tweedie = x + s[:, None] ** 2 * mix.score(x, sigma)
    scale = float(x.abs().max()) + 1.0
    torch.testing.assert_close(denoised, tweedie, rtol=0, atol=1e-9 * scale)
    # The posterior-mean formula with linalg.solve: the same round-off argument without the
    # cancellation, O(cond(C) eps |x|).
    torch.testing.assert_close(denoised, reference_denoiser(mix, x, sigma), rtol=1e-9,
                               atol=1e-9 * scale)
    assert mix(x, sigma).equal(denoised)


def snis_posterior_mean(mix, x, sigma, n, seed):
    """Self-normalised Monte-Carlo ``E[x0 | x]`` with x0 ~ p, weights N(x; x0, sigma^2 I).

    Returns the estimates (m, d) and their delta-method standard errors.
    """
    x0 = mix.sample(n, torch.Generator().manual_seed(seed))
    logw = -((x[:, None, :] - x0) ** 2).sum(dim=2) / (2 * sigma ** 2)  # (m, n)
    w = torch.softmax(logw, dim=1)
    est = w @ x0
    var = (w[..., None] ** 2 * (x0 - est[:, None, :]) ** 2).sum(dim=1)
    return est, var.sqrt()


def test_denoiser_matches_monte_carlo_posterior_mean():
    mix = make_mixture(7, k=3, d=2, kind="full")
    sigma = 0.6
    x = torch.tensor([[0.0, 0.0], [1.0, -1.0], [-2.0, 1.5]], dtype=F64)
    est, se = snis_posterior_mean(mix, x, sigma, n=200_000, seed=8)
    # 6 coordinates at 4 standard errors: false-failure rate <= 6 * 6.3e-5 < 4e-4 (normal
    # approximation; the O(1/n) self-normalisation bias is far below one standard error).
    assert bool((se < 0.02).all())  # the test has power: errors above 0.08 are detected
    np.testing.assert_array_less((mix.denoise(x, sigma) - est).abs(), 4 * se)
    # Negative control: the prior-weighted mean of the per-component posterior means.
    r_prior = mix.weights.expand(3, -1)
    wrong = (r_prior[..., None] * (mix.means + (
        mix.covs @ torch.linalg.solve(mix.covs + sigma ** 2 * torch.eye(2, dtype=F64),
                                      (x[:, None, :] - mix.means)[..., None]))[..., 0])).sum(1)
    with pytest.raises(AssertionError):
        np.testing.assert_array_less((wrong - est).abs(), 4 * se)


def test_denoiser_jacobian_is_symmetric_psd():
    # Second-order Tweedie: dD/dx = Cov[x0 | x] / sigma^2, symmetric positive semi-definite.
    mix = make_mixture(9, k=3, d=3, kind="low_rank")
    for x, sigma in ((torch.tensor([0.3, -0.2, 1.0], dtype=F64), 0.4),
                     (torch.tensor([2.0, 1.0, -1.0], dtype=F64), 3.0)):
        jac = torch.autograd.functional.jacobian(lambda v: mix.denoise(v[None], sigma)[0], x)
        torch.testing.assert_close(jac, jac.T, rtol=0, atol=1e-12)
        assert float(torch.linalg.eigvalsh(jac).min()) > -1e-12


# ---------------------------------------------------------------------------- singular
def test_singular_gaussian_projects_onto_its_support_and_has_no_clean_density():
    u = torch.tensor([[1.0], [2.0], [-1.0]], dtype=F64) / math.sqrt(6.0)
    mean = torch.tensor([1.0, 0.0, -1.0], dtype=F64)
    g = Gaussian(mean, 4.0 * u @ u.T)  # a line through `mean` along u: rank 1
    assert not g.has_density
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    for method in (g.log_prob, g.score, g.responsibilities):
        with pytest.raises(ValueError, match="sigma must be > 0"):
            method(x, 0.0)
    assert bool(torch.isfinite(g.log_prob(x, 1e-4)).all())
    assert bool(torch.isfinite(g.score(x, 1e-4)).all())
    # D(x, sigma) - projection = -U diag(sigma^2 / (l + sigma^2)) U^T (x - m): O(sigma^2 / l).
    projection = mean + (x - mean) @ u @ u.T
    torch.testing.assert_close(g.denoise(x, 1e-6), projection, rtol=0, atol=1e-11)
    samples = g.sample(1000, torch.Generator().manual_seed(1))
    off_support = (samples - mean) - (samples - mean) @ u @ u.T
    torch.testing.assert_close(off_support, torch.zeros_like(off_support), rtol=0, atol=1e-13)


def test_singular_mixture_denoiser_picks_the_nearest_support():
    means = torch.tensor([[0.0, 0.0, 0.0], [0.0, 6.0, 0.0]], dtype=F64)
    covs = torch.zeros(2, 3, 3, dtype=F64)
    covs[0, 0, 0], covs[1, 2, 2] = 1.0, 1.0  # a line along e1 through 0, one along e3
    mix = GaussianMixture(means, covs)
    assert not mix.has_density
    x = torch.tensor([[0.7, 0.1, -0.05], [-1.5, 0.02, 0.1]], dtype=F64)
    expected = torch.tensor([[0.7, 0.0, 0.0], [-1.5, 0.0, 0.0]], dtype=F64)
    # The other line is >= 5.9 away: its responsibility is exp(-17 / sigma^2) ~ 0.
    torch.testing.assert_close(mix.denoise(x, 1e-5), expected, rtol=0, atol=1e-9)


@given(mix=mixtures, s1=st.floats(1e-2, 10.0), s2=st.floats(1e-2, 10.0))
def test_noising_is_a_semigroup(mix, s1, s2):
    x = noisy_points(mix, torch.full((6,), math.hypot(s1, s2), dtype=F64))
    noised = mix.noised(s1)
    assert noised.has_density
    # l + s1^2 + s2^2 vs l + (s1^2 + s2^2): float64 round-off, a few ulp relative to 1e2.
    torch.testing.assert_close(noised.log_prob(x, s2), mix.log_prob(x, math.hypot(s1, s2)),
                               rtol=1e-11, atol=1e-11)
    assert_rows_close(noised.score(x, s2), mix.score(x, math.hypot(s1, s2)), 1e-10)


# ---------------------------------------------------------------------------- sampling
def assert_moments_match(samples: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> None:
    """Sample mean and covariance within 5 standard errors, entry-wise.

    With d(d+3)/2 <= 9 independent-ish checks, the false-failure rate is <= 9 * 5.7e-7 (CLT).
    """
    n = samples.shape[0]
    centred = samples - samples.mean(dim=0)
    products = centred[:, :, None] * centred[:, None, :]
    mean_se = centred.std(dim=0) / math.sqrt(n)
    cov_se = products.std(dim=0) / math.sqrt(n)
    np.testing.assert_array_less((samples.mean(dim=0) - mean).abs(), 5 * mean_se)
    np.testing.assert_array_less((products.mean(dim=0) - cov).abs(), 5 * cov_se)


def test_samples_match_closed_form_moments():
    mix = make_mixture(10, k=3, d=3, kind="full")
    samples = mix.sample(200_000, torch.Generator().manual_seed(11))
    assert samples.shape == (200_000, 3) and samples.dtype == F64
    assert_moments_match(samples, mix.mean, mix.covariance)
    # Negative control: the covariance without the between-component spread.
    within = torch.einsum("k,kij->ij", mix.weights, mix.covs)
    with pytest.raises(AssertionError):
        assert_moments_match(samples, mix.mean, within)


def test_sampling_is_reproducible_and_follows_dtype():
    mix = make_mixture(12, k=4, d=2, kind="diagonal")
    a = mix.sample(100, torch.Generator().manual_seed(3))
    b = mix.sample(100, torch.Generator().manual_seed(3))
    c = mix.sample(100, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    low = mix.sample(5, torch.Generator().manual_seed(3), dtype=torch.float32)
    assert low.dtype == torch.float32


# ---------------------------------------------------------------------------- classes
@pytest.mark.parametrize("sigma", [0.0, 0.8, "per_row"])
def test_class_posterior_and_class_scores(sigma):
    labels = [0, 1, 0, 2]
    mix = make_mixture(13, k=4, d=3, kind="full", labels=labels)
    if sigma == "per_row":
        sigma = torch.tensor([0.0, 0.1, 0.5, 1.0, 2.0, 5.0], dtype=F64)
    x = noisy_points(mix, full_sigma(sigma, 6))
    posterior = mix.class_posterior(x, sigma)
    resp = torch.softmax(reference_component_log_probs(mix, x, sigma), dim=1)
    by_class = torch.stack([resp[:, [k for k in range(4) if labels[k] == c]].sum(dim=1)
                            for c in range(3)], dim=1)
    # Both are softmaxes of float64 logits that agree to ~1e-13 (see the log_prob test).
    torch.testing.assert_close(mix.responsibilities(x, sigma), resp, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(posterior, by_class, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(posterior.sum(dim=1), torch.ones(6, dtype=F64), rtol=0, atol=1e-14)
    class_scores = torch.stack([mix.class_score(x, sigma, c) for c in range(3)], dim=1)
    for c in range(3):
        assert_rows_close(class_scores[:, c], mix.conditional(c).score(x, sigma), 1e-12)
    per_row_classes = torch.tensor([0, 1, 2, 2, 1, 0])
    assert_rows_close(mix.class_score(x, sigma, per_row_classes),
                      class_scores[torch.arange(6), per_row_classes], 1e-12)
    # Bayes: grad log p = sum_c p(c | x) grad log p(x | c).
    bayes = (posterior[..., None] * class_scores).sum(dim=1)
    assert_rows_close(bayes, mix.score(x, sigma), 1e-10)
    # Negative control: uniform instead of posterior class weights breaks the identity.
    with pytest.raises(AssertionError):
        assert_rows_close(class_scores.mean(dim=1), mix.score(x, sigma), 1e-10)


def test_conditional_is_the_renormalised_sub_mixture():
    mix = make_mixture(14, k=4, d=2, kind="isotropic", labels=[1, 0, 1, 1])
    sub = mix.conditional(1)
    keep = torch.tensor([0, 2, 3])
    torch.testing.assert_close(sub.means, mix.means[keep], rtol=0, atol=0)
    torch.testing.assert_close(sub.weights, mix.weights[keep] / mix.weights[keep].sum(),
                               rtol=1e-15, atol=0)
    assert sub.num_components == 3 and mix.num_classes == 2


# ---------------------------------------------------------------------------- float32
@pytest.mark.parametrize("sigma", [0.05, 1.0, 20.0, "per_row"])
def test_float32_agrees_with_float64(sigma):
    mix = make_mixture(15, k=3, d=4, kind="full")
    if sigma == "per_row":
        sigma = torch.tensor([0.05, 0.2, 1.0, 5.0, 20.0, 0.5], dtype=F64)
    x64 = noisy_points(mix, full_sigma(sigma, 6))
    x32 = x64.float()
    s32 = sigma.float() if isinstance(sigma, torch.Tensor) else sigma
    # float32 unit round-off 6e-8, amplified by cond(C_k) <= ~1e3 (l >= 0.05, sigma >= 0.05)
    # and by |x| / |x - m_k|: observed <= 5e-6 relative over 60 random mixtures; 2e-4 is a safe
    # bound that still catches float32-only slips (a lost cast or a float32 eigendecomposition
    # would be >= 1e-3).
    for method, tol in ((mix.log_prob, 2e-4), (mix.score, 2e-4), (mix.denoise, 2e-4)):
        out32 = method(x32, s32)
        assert out32.dtype == torch.float32
        out64 = method(x64, sigma)
        if out64.ndim == 1:
            torch.testing.assert_close(out32.double(), out64, rtol=tol, atol=tol)
        else:
            assert_rows_close(out32.double(), out64, tol)


# ---------------------------------------------------------------------------- bad input
EYE2 = torch.eye(2, dtype=F64)
MEANS2 = torch.zeros(2, 2, dtype=F64)


def _mixture_with(**changes):
    kwargs = {"means": MEANS2, "covs": torch.stack([EYE2, EYE2]), "weights": None,
              "labels": None}
    kwargs.update(changes)
    return lambda: GaussianMixture(**kwargs)


LABELLED = GaussianMixture(MEANS2, 1.0, labels=[0, 2])
X2 = torch.zeros(3, 2, dtype=F64)

BAD_INPUTS = [
    (_mixture_with(covs=torch.tensor([[[1.0, 0.5], [0.0, 1.0]]] * 2)), ValueError,
     "covs must be symmetric"),
    (_mixture_with(covs=torch.tensor([[[1.0, 2.0], [2.0, 1.0]]] * 2)), ValueError,
     "covs must be positive semi-definite"),
    (_mixture_with(covs=torch.tensor([1.0, -1.0])), ValueError, "covs must be positive"),
    (_mixture_with(covs=torch.ones(3, 2)), ValueError, "covs must have shape"),
    (_mixture_with(covs=torch.ones(2, 3, 3)), ValueError, "covs must have shape"),
    (_mixture_with(covs="big"), TypeError, "covs must be"),
    (_mixture_with(means=torch.zeros(2)), ValueError, "means must have shape"),
    (_mixture_with(means=torch.tensor([[0.0, float("nan")], [0.0, 0.0]])), ValueError,
     "means must be finite"),
    (_mixture_with(weights=[1.0, -0.5]), ValueError, "weights must be non-negative"),
    (_mixture_with(weights=[1.0, float("nan")]), ValueError, "weights must be finite"),
    (_mixture_with(weights=[0.0, 0.0]), ValueError, "weights must have at least one positive"),
    (_mixture_with(weights=[1.0, 1.0, 1.0]), ValueError, "weights must have shape"),
    (_mixture_with(labels=[0, 1, 1]), ValueError, "labels must have shape"),
    (_mixture_with(labels=[0.0, 1.0]), TypeError, "labels must be integers"),
    (_mixture_with(labels=[0, -1]), ValueError, "labels must be >= 0"),
    (lambda: Gaussian(torch.zeros(2), torch.tensor([[1.0, 1.0], [0.0, 1.0]])), ValueError,
     "cov must be symmetric"),
    (lambda: Gaussian(torch.zeros(2), torch.tensor([[1.0, 0.0], [0.0, -1.0]])), ValueError,
     "cov must be positive semi-definite"),
    (lambda: Gaussian(torch.zeros(2), torch.ones(3)), ValueError, "cov must have shape"),
    (lambda: Gaussian(torch.zeros(2, 1), 1.0), ValueError, "mean must have shape"),
    (lambda: LABELLED.log_prob(torch.tensor([[0.0, float("nan")]])), ValueError,
     "x must be finite"),
    (lambda: LABELLED.score(torch.zeros(3, 3, dtype=F64)), ValueError, "x must have shape"),
    (lambda: LABELLED.denoise([[0.0, 0.0]], 1.0), TypeError, "x must be a torch.Tensor"),
    (lambda: LABELLED.denoise(X2, -1.0), ValueError, "sigma must be"),
    (lambda: LABELLED.score(X2, torch.ones(2, dtype=F64)), ValueError, "sigma must be"),
    (lambda: LABELLED.noised(-0.1), ValueError, "sigma must be"),
    (lambda: LABELLED.class_score(X2, 1.0, 1), ValueError, "c must be a class"),  # empty class
    (lambda: LABELLED.class_score(X2, 1.0, torch.tensor([0, 2, 3])), ValueError, "c must hold"),
    (lambda: LABELLED.class_score(X2, 1.0, torch.tensor([0, 2])), ValueError, "c must be an int"),
    (lambda: LABELLED.class_score(X2, 1.0, torch.zeros(3)), TypeError, "c must be an integer"),
    (lambda: LABELLED.conditional(5), ValueError, "c must be a class"),
    (lambda: LABELLED.conditional(1.0), TypeError, "c must be an int"),
    (lambda: GaussianMixture(MEANS2, 1.0).class_posterior(X2, 1.0), ValueError, "labels="),
]


@pytest.mark.parametrize("make, error, message", BAD_INPUTS)
def test_bad_input_raises_naming_the_argument(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_mean_and_covariance_are_the_same_properties_on_both_classes():
    """Generic code reads ``target.mean`` / ``target.covariance`` on any mixture or Gaussian."""
    g = Gaussian(torch.tensor([1.0, -1.0]), torch.tensor([[2.0, 0.5], [0.5, 1.0]]))
    as_mixture = GaussianMixture(g.means, g.covs)
    for target in (g, as_mixture):
        torch.testing.assert_close(target.mean, torch.tensor([1.0, -1.0], dtype=torch.float64))
        torch.testing.assert_close(target.covariance, g.cov)


# ---------------------------------------------------------------------------- float32, singular
EPS32 = torch.finfo(torch.float32).eps


def low_rank_mixture(k: int, seed: int = 0) -> GaussianMixture:
    """K rank-2 components in R^4, means away from the origin (so |x| >> |x - m_k|)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(k, 4, 2, generator=g, dtype=F64)
    means = 1.0 + 3.0 * torch.randn(k, 4, generator=g, dtype=F64)
    return GaussianMixture(means, a @ a.transpose(1, 2))


@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("sigma", [1e-4, 1e-3, 1e-2])
@pytest.mark.parametrize("per_row", [False, True])
def test_float32_singular_components_at_small_sigma(k, sigma, per_row):
    """float32 log_prob and score of rank-2 components in R^4 against float64 at the same points.

    Error bound of the eigen route (first order, unit round-off u = eps / 2): ``y = U^T (x - m)``
    carries ``|dy_j| <= (d + 2) u (|x| + M)`` (the product, the shift, the rounded U), with
    ``M = max |m_k|``; so ``|d log p| <= |dy|_inf |v|_1 + ...`` with ``v = C^{-1} (x - m)`` and
    ``|v|_1 <= sqrt(d) |score|``, plus ``u`` times ``|quad| <= |x - m| |score|`` and
    ``sum_j |log(l_j + sigma^2)|``. In the eigenbasis the score has ``|dv_j| <= (d + 2) u
    (|x| + M) / (l_j + sigma^2)`` plus ``u |v|`` from rotating back with the rounded ``U``. The
    tolerances are these bounds with ``d`` eps in place of ``(d + 2) u`` and a factor 2 on top;
    the eigen route stays below 0.1 of them. The old shared-sigma precision route
    ``x C^{-1} - C^{-1} m`` (``|C^{-1}| = 1/sigma^2``) exceeds them 3x-550x (log_prob off by 100
    at sigma = 1e-4).
    """
    mix = low_rank_mixture(k)
    d, n = mix.dim, 64
    g = torch.Generator().manual_seed(1)
    s = sigma * (1 + torch.rand(n, generator=g, dtype=F64)) if per_row else torch.full((n,), sigma)
    s32 = s.float()
    x32 = (mix.sample(n, g) + s[:, None] * torch.randn(n, d, generator=g, dtype=F64)).float()
    x64, s64 = x32.double(), s32.double()
    arg32, arg64 = (s32, s64) if per_row else (float(s32[0]), float(s64[0]))
    assert mix.has_density is False
    lp32, lp64 = mix.log_prob(x32, arg32), mix.log_prob(x64, arg64)
    sc32, sc64 = mix.score(x32, arg32), mix.score(x64, arg64)
    assert lp32.dtype == sc32.dtype == torch.float32

    xs = x64.norm(dim=1) + float(mix.means.norm(dim=1).max())
    lam, vecs = torch.linalg.eigh(mix.covs)  # independent eigendecomposition, (K, d), (K, d, d)
    den = lam.clamp_min(0)[None] + s64[:, None, None] ** 2  # (n, K, d)
    log_dets = den.log().abs().sum(-1).amax(-1)
    tol_lp = 2 * d * EPS32 * ((math.sqrt(d) + 1) * xs * sc64.norm(dim=1) + log_dets)
    assert bool(((lp32.double() - lp64).abs() <= tol_lp).all())

    # Score in the eigenbasis of each row's dominant component (the others have r_k ~ 0).
    top = mix.responsibilities(x64, arg64).argmax(1)
    u, den_top = vecs[top], den[torch.arange(n), top]
    v32 = torch.einsum("nij,ni->nj", u, sc32.double())
    v64 = torch.einsum("nij,ni->nj", u, sc64)
    tol_v = 2 * d * EPS32 * (math.sqrt(d) * xs[:, None] / den_top
                             + v64.norm(dim=1, keepdim=True))
    assert bool(((v32 - v64).abs() <= tol_v).all())


def test_precision_route_only_where_it_is_accurate():
    """The fast precision route serves well-conditioned float64 calls and nothing else."""
    well = make_mixture(3, k=4, d=8, kind="full")  # cond(C_k) <= ~1e3
    assert well._precision_is_safe(0.5, F64)
    assert not well._precision_is_safe(0.5, torch.float32)
    singular = low_rank_mixture(2)
    assert singular._precision_is_safe(1.0, F64)
    assert not singular._precision_is_safe(1e-4, F64)  # cond ~ l_max / 1e-8


def test_float64_singular_components_at_tiny_sigma_match_per_row_route():
    """float64, sigma = 1e-6: the shared-sigma call equals the per-row (eigen) route.

    Both now take the eigen route (cond = l_max / sigma^2 ~ 1e12 > 1e6); the relative error of
    its quadratic form is ~ d eps64 |x| / sigma ~ 1e-8 of log_prob's O(1e1) size, so 1e-8
    absolute on log_prob (values ~ 20) and 1e-9 relative on the score are 10-100x margins.
    """
    mix = low_rank_mixture(2)
    g = torch.Generator().manual_seed(4)
    x = mix.sample(32, g) + 1e-6 * torch.randn(32, 4, generator=g, dtype=F64)
    per_row = torch.full((32,), 1e-6, dtype=F64)
    torch.testing.assert_close(mix.log_prob(x, 1e-6), mix.log_prob(x, per_row),
                               rtol=0, atol=1e-8)
    assert_rows_close(mix.score(x, 1e-6), mix.score(x, per_row), 1e-9)


# ---------------------------------------------------------------------------- float32 parameters
def _perturbation_bounds(g64: Gaussian, delta_s: float, x: torch.Tensor, sigma: float):
    """First-order bounds on |d log p| and |d score| for a covariance perturbation ``|dS|_2``.

    ``d log det C = tr(C^{-1} dS) <= d |dS| / lambda_min(C)``, ``d quad = -v^T dS v <= |v|^2 |dS|``
    and ``d(C^{-1} r) = -C^{-1} dS v``, ``|.| <= |dS| |v| / lambda_min(C)``; with
    ``v = -score``. Returned doubled (0.5 of the log-det and quad terms is dropped).
    """
    lam_min = float(torch.linalg.eigvalsh(g64.cov).min().clamp_min(0)) + sigma ** 2
    v = g64.score(x, sigma).norm(dim=1)
    return ((g64.dim / lam_min + v ** 2) * delta_s,
            2 * delta_s * v / lam_min)


@pytest.mark.parametrize("rank", [4, 2])
def test_float32_covariance_is_accepted_and_agrees_with_float64(rank):
    """float32 ``(A D) A^T`` (rank 4) and ``A A^T`` (rank 2): accepted, rank kept, results close.

    The old float64 tolerances (1e-10) rejected both: asymmetry ~5e-7 and eigenvalue ~-2e-8.
    """
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, rank, generator=g, dtype=F64)
    diag = torch.diag(torch.rand(rank, generator=g, dtype=F64) + 0.5)
    cov32 = (a.float() @ diag.float()) @ a.float().T
    cov64 = (a @ diag) @ a.T
    g32, g64 = Gaussian(torch.ones(4), cov32), Gaussian(torch.ones(4), cov64)
    assert g32.has_density == g64.has_density == (rank == 4)
    torch.testing.assert_close(g32.cov, g32.cov.T, rtol=0, atol=0)  # symmetrised
    delta_s = float(torch.linalg.matrix_norm(g32.cov - cov64, ord="fro"))
    assert 0 < delta_s <= 4 * 4 * EPS32 * float(cov64.abs().max())  # float32-sized difference
    sigma = 0.1
    x = g64.sample_noised(50, sigma, torch.Generator().manual_seed(1))
    tol_lp, tol_score = _perturbation_bounds(g64, delta_s, x, sigma)
    assert bool(((g32.log_prob(x, sigma) - g64.log_prob(x, sigma)).abs() <= tol_lp).all())
    assert bool(((g32.score(x, sigma) - g64.score(x, sigma)).norm(dim=1) <= tol_score).all())


def test_float32_parameters_from_the_testing_strategy():
    """``labkit.testing.gaussian_mixtures(covariance="low_rank", dtype=float32)`` draws singular
    mixtures (it crashed on the float64-only tolerances) whose float32 denoiser is finite."""
    from hypothesis import given as given_, settings
    from labkit.testing import gaussian_mixtures

    @settings(max_examples=15, deadline=None)
    @given_(gaussian_mixtures(covariance="low_rank", dtype=torch.float32))
    def check(mix):
        assert not mix.has_density
        x = mix.sample_noised(8, 0.5, torch.Generator().manual_seed(0))
        out = mix.denoise(x.float(), 0.5)
        assert out.dtype == torch.float32 and bool(torch.isfinite(out).all())

    check()


@pytest.mark.parametrize("make, message", [
    (lambda: Gaussian(torch.zeros(2), torch.tensor([[1.0, 1e-3], [0.0, 1.0]])),
     "cov must be symmetric"),
    (lambda: Gaussian(torch.zeros(2), torch.tensor([[1.0, 0.0], [0.0, -1e-3]])),
     "cov must be positive semi-definite"),
    (lambda: GaussianMixture(torch.zeros(1, 2), torch.tensor([[[1.0, 2e-3], [0.0, 1.0]]])),
     "covs must be symmetric"),
    (lambda: GaussianMixture(torch.zeros(1, 2), torch.tensor([[1.0, -1e-3]])),
     "covs must be positive semi-definite"),
    # A float64 input keeps the float64 tolerance: 1e-7 would pass in float32, not here.
    (lambda: Gaussian(torch.zeros(2), torch.tensor([[1.0, 1e-7], [0.0, 1.0]], dtype=F64)),
     "cov must be symmetric"),
    (lambda: Gaussian(torch.zeros(2), np.array([[1.0, 0.0], [0.0, -1e-7]])),
     "cov must be positive semi-definite"),
])
def test_float32_tolerance_still_rejects_real_errors(make, message):
    """float32 input (default torch dtype here) errs by >> 1e3 eps32 = 1.2e-4: still rejected."""
    with pytest.raises(ValueError, match=message):
        make()
