"""Exact log-density of deterministic samplers (labkit.likelihood.sampler)."""

import math

import pytest
import torch

import labkit
from labkit.likelihood.sampler import sampler_kl, sampler_log_prob

F64 = torch.float64


def _gaussian_target():
    mean = torch.tensor([0.5, -1.0], dtype=F64)
    cov = torch.tensor([[1.0, 0.6], [0.6, 0.8]], dtype=F64)
    return labkit.Gaussian(mean, cov), mean, cov


def _mixture_2d():
    means = torch.tensor([[-1.5, 0.0], [1.5, 0.5]], dtype=F64)
    covs = torch.stack([0.3 * torch.eye(2, dtype=F64), 0.5 * torch.eye(2, dtype=F64)])
    return labkit.GaussianMixture(means, covs, torch.tensor([0.4, 0.6], dtype=F64))


def _affine_map(target, sigmas, solver):
    """``Phi(z) = A z + b`` read off the sampler itself on 0 and the basis (independent of the
    Jacobian code: plain forward runs of labkit.sample)."""
    points = torch.cat([torch.zeros(1, 2, dtype=F64), torch.eye(2, dtype=F64)])
    out, _ = labkit.sample(target, points, sigmas, solver)
    b = out[0]
    return (out[1:] - b).T, b


def _gaussian_kl(m1, s1, m2, s2):
    """KL(N(m1, s1) || N(m2, s2)) written out: 0.5 [tr(S2^-1 S1) + dm^T S2^-1 dm - d + ln |S2|/|S1|]."""
    inv = torch.linalg.inv(s2)
    dm = m2 - m1
    return 0.5 * float(torch.trace(inv @ s1) + dm @ inv @ dm - len(m1)
                       + torch.logdet(s2) - torch.logdet(s1))


@pytest.mark.parametrize("solver", ["euler", "heun", "ddim", "dpmpp_2m"])
def test_affine_sampler_matches_closed_form(solver):
    target, mean, cov = _gaussian_target()
    sigmas = labkit.grids.karras(5, 0.002, 20.0).to(F64)
    a, b = _affine_map(target, sigmas, solver)
    q_cov = sigmas[0] ** 2 * a @ a.T
    z = sigmas[0] * torch.randn(2000, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    res = sampler_log_prob(target, z, sigmas, solver)
    # The map is affine, so the exact log q is N(b, sigma_max^2 A A^T)'s log-density at every
    # point: only round-off separates them (1e-10 absolute on values of order 10).
    q = torch.distributions.MultivariateNormal(b, covariance_matrix=q_cov)
    torch.testing.assert_close(res.log_prob, q.log_prob(res.y), rtol=0, atol=1e-10)
    torch.testing.assert_close(res.jacobian, a.expand(2000, 2, 2), rtol=0, atol=1e-10)
    # The MC interval (95%, fixed seed) on the exact integrand contains the closed-form KL.
    est = sampler_kl(target, target, sigmas, solver, n=2000,
                     generator=torch.Generator().manual_seed(2))
    exact = _gaussian_kl(b, q_cov, mean, cov)
    assert exact > 1e-3  # 5 steps: a visible bias, not a trivial zero
    assert est.contains(exact), (est, exact)
    assert est.stderr == pytest.approx(est.half_width / 1.96, rel=0.01)


def test_dropped_log_det_is_caught():
    # Negative control of the interval check of test_affine_sampler_matches_closed_form: the
    # same estimator without the log-determinant (log q := prior). For the affine Heun map its
    # integrand is shifted by the constant log |det A| (a priori, checked to 1e-10), so its
    # interval is the correct one shifted by log |det A|, while the closed form lies inside the
    # correct one: it is excluded as soon as |log |det A|| > 2 half-widths.
    target, mean, cov = _gaussian_target()
    sigmas = labkit.grids.karras(5, 0.002, 20.0).to(F64)
    a, b = _affine_map(target, sigmas, "heun")
    log_det = float(torch.linalg.slogdet(a)[1])
    z = sigmas[0] * torch.randn(2000, 2, dtype=F64, generator=torch.Generator().manual_seed(2))
    res = sampler_log_prob(target, z, sigmas, "heun")
    right = res.log_prob - target.log_prob(res.y)
    wrong = res.prior_log_prob - target.log_prob(res.y)
    torch.testing.assert_close(wrong - right, torch.full_like(right, log_det), rtol=0, atol=1e-10)
    est = sampler_kl(target, target, sigmas, "heun", n=2000,
                     generator=torch.Generator().manual_seed(2))
    exact = _gaussian_kl(b, sigmas[0] ** 2 * a @ a.T, mean, cov)
    assert est.contains(exact)
    assert abs(log_det) > 2 * est.half_width, (log_det, est.half_width)
    lo, hi = est.interval
    assert not lo + log_det <= exact <= hi + log_det


def test_orientation_reversing_map_has_a_density():
    # Phi(z) = diag(-1, 1) z (one Euler step to sigma = 0 of D(x, s) = diag(-1, 1) x): det J = -1
    # at every point, a diffeomorphism, so log q = log N(z; 0, sigma_max^2 I) - log 1, which is
    # log N(y; 0, sigma_max^2 I) by symmetry (to round-off, 1e-12).
    flip = torch.tensor([-1.0, 1.0], dtype=F64)
    sigmas = torch.tensor([10.0, 0.0], dtype=F64)
    z = 10 * torch.randn(50, 2, dtype=F64, generator=torch.Generator().manual_seed(6))
    res = sampler_log_prob(lambda x, s: x * flip, z, sigmas, "euler")
    torch.testing.assert_close(res.y, z * flip, rtol=0, atol=1e-12)
    prior = torch.distributions.Normal(torch.zeros(2, dtype=F64), 10.0)
    torch.testing.assert_close(res.log_prob, prior.log_prob(res.y).sum(1), rtol=0, atol=1e-12)
    torch.testing.assert_close(res.log_abs_det, torch.zeros(50, dtype=F64), rtol=0, atol=1e-12)


def test_singular_map_raises():
    # D = 0 maps everything to 0 in one Euler step to sigma = 0: det J = 0, infinite density.
    z = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="singular"):
        sampler_log_prob(lambda x, s: 0 * x, z, torch.tensor([1.0, 0.0], dtype=F64), "euler")


def test_solver_is_built_once_across_chunks(monkeypatch):
    import labkit.likelihood.sampler as module
    calls = []
    build = module._deterministic_solver
    monkeypatch.setattr(module, "_deterministic_solver",
                        lambda *args: calls.append(1) or build(*args))
    monkeypatch.setattr(module, "_ROWS_PER_PASS", 4)  # 2 points per chunk: 3 chunks
    target = _mixture_2d()
    sigmas = labkit.grids.karras(5, 0.002, 20.0).to(F64)
    z = 20 * torch.randn(6, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    chunked = module.sampler_log_prob(target, z, sigmas, "dpmpp_2m")
    assert len(calls) == 1
    monkeypatch.setattr(module, "_ROWS_PER_PASS", 1 << 16)
    whole = module.sampler_log_prob(target, z, sigmas, "dpmpp_2m")
    # multistep history reset at i = 0: chunks equal one pass to round-off
    torch.testing.assert_close(chunked.log_prob, whole.log_prob, rtol=0, atol=1e-12)


def test_negative_sigma_target_raises():
    target, _, _ = _gaussian_target()
    with pytest.raises(ValueError, match="sigma_target must be >= 0"):
        sampler_kl(target, target, labkit.grids.karras(5, 0.002, 20.0), "heun", n=4,
                   generator=torch.Generator().manual_seed(0), sigma_target=-0.1)


def test_wrong_prior_scale_is_caught():
    # Negative control: log q evaluated with a prior 10% too wide differs from the closed form
    # by far more than the 1e-10 the correct prior achieves.
    target, _, _ = _gaussian_target()
    sigmas = labkit.grids.karras(5, 0.002, 20.0).to(F64)
    a, b = _affine_map(target, sigmas, "heun")
    z = sigmas[0] * torch.randn(100, 2, dtype=F64, generator=torch.Generator().manual_seed(3))
    res = sampler_log_prob(target, z, sigmas, "heun")
    q = torch.distributions.MultivariateNormal(b, covariance_matrix=sigmas[0] ** 2 * a @ a.T)
    wide = torch.distributions.MultivariateNormal(torch.zeros(2, dtype=F64),
                                                  (1.1 * sigmas[0]) ** 2 * torch.eye(2, dtype=F64))
    wrong = wide.log_prob(z) - res.log_abs_det
    assert float((wrong - q.log_prob(res.y)).abs().max()) > 0.1


def test_density_integrates_to_one_in_1d():
    # In 1-D Phi is increasing, so the outputs of a fine z grid are ordered nodes y_g and the
    # trapezoid rule over them checks log q against the actual spacing of the outputs (a
    # finite-difference check of the derivative, not a tautology). Quadrature error O(h^2) ~ 1e-5.
    target = labkit.GaussianMixture(torch.tensor([[-1.0], [1.5]], dtype=F64),
                                    torch.tensor([[[0.2]], [[0.4]]], dtype=F64))
    sigmas = labkit.grids.karras(8, 0.01, 10.0).to(F64)
    z = torch.linspace(-80.0, 80.0, 4001, dtype=F64)[:, None]
    res = sampler_log_prob(target, z, sigmas, "dpmpp_2m")
    y, q = res.y[:, 0], res.log_prob.exp()
    assert bool((y[1:] > y[:-1]).all())
    mass = float((0.5 * (q[1:] + q[:-1]) * (y[1:] - y[:-1])).sum())
    assert mass == pytest.approx(1.0, abs=1e-4)


def test_importance_identity_on_2d_mixture():
    # E_{y ~ q}[p(y) / q(y)] = 1 for a q covering p (heun, 10 steps, on a 2-D mixture); checked
    # within 4 standard errors (false-failure rate < 1e-4, fixed seed). Negative control: the
    # density without the log-determinant violates it by many standard errors.
    target = _mixture_2d()
    sigmas = labkit.grids.karras(10, 0.002, 20.0).to(F64)
    z = sigmas[0] * torch.randn(3000, 2, dtype=F64, generator=torch.Generator().manual_seed(4))
    res = sampler_log_prob(target, z, sigmas, "heun")
    p = target.log_prob(res.y)
    ratio = (p - res.log_prob).exp()
    stderr = float(ratio.std()) / math.sqrt(len(ratio))
    assert abs(float(ratio.mean()) - 1) < 4 * stderr
    wrong = (p - res.prior_log_prob).exp()
    assert abs(float(wrong.mean()) - 1) > 50 * float(wrong.std()) / math.sqrt(len(wrong))


@pytest.mark.parametrize("solver", ["heun", "lms", "dpmpp_3m", "unipc", "deis"])
def test_jacobian_matches_finite_differences(solver):
    # Central differences with step 1e-5 on values of order 1: truncation ~1e-10 * |Phi'''|,
    # round-off ~1e-16 / 1e-5 = 1e-11, so 1e-6 is a wide tolerance; a wrong row would be O(1).
    target = _mixture_2d()
    sigmas = labkit.grids.karras(10, 0.002, 20.0).to(F64)
    z = sigmas[0] * torch.randn(3, 2, dtype=F64, generator=torch.Generator().manual_seed(5))
    res = sampler_log_prob(target, z, sigmas, solver)
    eps = 1e-5
    cols = []
    for k in range(2):
        e = torch.zeros(2, dtype=F64)
        e[k] = eps
        plus, _ = labkit.sample(target, z + e, sigmas, solver)
        minus, _ = labkit.sample(target, z - e, sigmas, solver)
        cols.append((plus - minus) / (2 * eps))
    fd = torch.stack(cols, dim=2)  # fd[j, :, k] = d y / d z_k
    torch.testing.assert_close(res.jacobian, fd, rtol=1e-6, atol=1e-6)
    plain, _ = labkit.sample(target, z, sigmas, solver)
    torch.testing.assert_close(res.y, plain, rtol=0, atol=0)


def test_rejections_name_the_alternative():
    target = _mixture_2d()
    sigmas = labkit.grids.karras(5, 0.002, 20.0).to(F64)
    z = torch.randn(4, 2, dtype=F64)
    with pytest.raises(ValueError, match="sde_chain"):
        sampler_log_prob(target, z, sigmas, "euler_ancestral")
    with pytest.raises(ValueError, match="churn"):
        sampler_log_prob(target, z, sigmas, "heun", s_churn=1.0)
    with pytest.raises(ValueError, match="whole batch"):
        sampler_log_prob(target, z, sigmas, "dpm_adaptive")
    with pytest.raises(ValueError, match="solver must be one of"):
        sampler_log_prob(target, z, sigmas, "nope")
    # eta = 0 makes euler_ancestral the (deterministic) Euler map: accepted, same density.
    a = sampler_log_prob(target, z, sigmas, "euler_ancestral", eta=0.0)
    b = sampler_log_prob(target, z, sigmas, "euler")
    torch.testing.assert_close(a.log_prob, b.log_prob, rtol=0, atol=1e-12)


def test_folding_map_raises_more_steps():
    # 3 Heun steps from sigma 10 on two narrow modes fold the plane: det J changes sign between
    # the sampled points (about half have det < 0), which proves non-injectivity; 2 steps do
    # not.
    target = labkit.GaussianMixture(torch.tensor([[-2.0, 0.0], [2.0, 0.5]], dtype=F64),
                                    torch.stack([0.05 * torch.eye(2, dtype=F64)] * 2))
    z = 10 * torch.randn(200, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="folds.*more steps"):
        sampler_log_prob(target, z, labkit.grids.karras(3, 0.01, 10.0), "heun")
    sampler_log_prob(target, z, labkit.grids.karras(2, 0.01, 10.0), "heun")
