"""Exact and Hutchinson divergences: analytic traces, finite differences, unbiasedness, variance."""

import itertools
import math

import pytest
import torch

import labkit
from labkit.likelihood.divergence import (draw_probes, exact_divergence, hutchinson_divergence,
                                          hutchinson_variance)

F64 = torch.float64


def _mixture() -> labkit.GaussianMixture:
    g = torch.Generator().manual_seed(3)
    a = torch.randn(3, 2, 2, generator=g, dtype=F64)
    covs = 0.1 * a @ a.transpose(1, 2) + 0.05 * torch.eye(2, dtype=F64)
    return labkit.GaussianMixture(1.5 * torch.randn(3, 2, generator=g, dtype=F64), covs,
                                  weights=[0.5, 0.3, 0.2])


def _pf_field(target, sigma):
    """The probability-flow ODE field f = (x - D(x, sigma)) / sigma (EDM)."""
    return lambda y: (y - target(y, sigma * y.new_ones(y.shape[0]))) / sigma


def _fd_jacobian(f, x, h=1e-5):
    """Central finite-difference Jacobian per row, shape (n, d, d); error O(h^2) ~ 1e-10."""
    d = x.shape[1]
    cols = [(f(x + h * e) - f(x - h * e)) / (2 * h) for e in torch.eye(d, dtype=x.dtype)]
    return torch.stack(cols, dim=2)


def _linear(seed=0, d=5):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=F64)
    b = torch.randn(d, generator=g, dtype=F64)
    return a, (lambda y: y @ a.T + b)


def test_exact_divergence_of_linear_map_is_trace():
    a, f = _linear()
    x = torch.randn(7, 5, generator=torch.Generator().manual_seed(1), dtype=F64)
    fx, div = exact_divergence(f, x)
    torch.testing.assert_close(fx, f(x))
    # exact to round-off: a sum of 5 entries of a
    torch.testing.assert_close(div, torch.trace(a).expand(7), rtol=0, atol=1e-13)


def test_exact_divergence_of_nonlinear_rowwise_field():
    x = torch.randn(9, 4, generator=torch.Generator().manual_seed(2), dtype=F64)
    _, div = exact_divergence(lambda y: torch.sin(y) * y[:, :1], x)
    # d/dy_i [sin(y_i) y_0] = cos(y_i) y_0 (+ sin(y_0) for i = 0)
    expected = (torch.cos(x) * x[:, :1]).sum(dim=1) + torch.sin(x[:, 0])
    torch.testing.assert_close(div, expected, rtol=0, atol=1e-13)


@pytest.mark.parametrize("sigma", [0.05, 0.5, 3.0])
def test_exact_divergence_of_mixture_pf_field_matches_finite_differences(sigma):
    mix = _mixture()
    f = _pf_field(mix, sigma)
    x = mix.sample_noised(16, sigma, torch.Generator().manual_seed(4))
    _, div = exact_divergence(f, x)
    fd = _fd_jacobian(f, x).diagonal(dim1=1, dim2=2).sum(dim=1)
    # central differences at h = 1e-5: truncation h^2 |f'''| and round-off eps |f| / h, both
    # below 1e-8 relative for these fields (|J| <= 1/sigma * 20)
    torch.testing.assert_close(div, fd, rtol=1e-7, atol=1e-7 / sigma)


def test_exact_divergence_of_gaussian_denoiser_is_closed_form():
    """D(x) = m + S (S + s^2 I)^-1 (x - m): div D = tr(S (S + s^2 I)^-1)."""
    cov = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=F64)
    target = labkit.Gaussian(torch.tensor([0.5, -1.0], dtype=F64), cov)
    x = target.sample_noised(5, 0.7, torch.Generator().manual_seed(5))
    _, div = exact_divergence(lambda y: target(y, 0.7 * y.new_ones(y.shape[0])), x)
    expected = torch.trace(cov @ torch.linalg.inv(cov + 0.49 * torch.eye(2, dtype=F64)))
    torch.testing.assert_close(div, expected.expand(5), rtol=0, atol=1e-12)


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased_and_variance_matches_formula(probe):
    """One point repeated N = 40000 times with one probe each: the mean is within 4 standard
    errors of tr J (false-failure rate ~6e-5 per point) and the sample variance within 6 of its
    own standard errors of hutchinson_variance(J)."""
    mix = _mixture()
    f = _pf_field(mix, 0.4)
    points = mix.sample_noised(3, 0.4, torch.Generator().manual_seed(6))
    n = 40_000
    g = torch.Generator().manual_seed(7)
    for p in points:
        x = p.expand(n, 2).clone()
        _, est, var = hutchinson_divergence(f, x, probe=probe, generator=g)
        assert var is None  # one probe per row
        _, exact = exact_divergence(f, p[None])
        jac = torch.autograd.functional.jacobian(lambda y: f(y[None])[0], p)
        theory = hutchinson_variance(jac, probe)
        stderr = math.sqrt(float(theory) / n)
        assert abs(float(est.mean() - exact[0])) < 4 * stderr + 1e-12
        centred = est - est.mean()
        sample_var = centred.square().mean()
        var_stderr = math.sqrt(float(centred.pow(4).mean() - sample_var ** 2) / n)
        assert abs(float(sample_var - theory)) < 6 * var_stderr + 1e-12


def test_hutchinson_n_probes_reports_per_point_variance():
    a, f = _linear(d=4)
    x = torch.zeros(3, 4, dtype=F64)
    res = hutchinson_divergence(f, x, n_probes=2000, probe="gaussian",
                                generator=torch.Generator().manual_seed(8))
    theory = float(hutchinson_variance(a, "gaussian"))
    assert res.variance.shape == (3,)
    # sample variance of 2000 Gaussian quadratic forms: relative stderr ~ sqrt(kurtosis/2000)
    # ~ 0.1 here; 0.35 is > 3 of them
    torch.testing.assert_close(res.variance, torch.full((3,), theory, dtype=F64), rtol=0.35,
                               atol=0)
    z = (res.divergence - torch.trace(a)) / (res.variance / 2000).sqrt()
    assert bool((z.abs() < 4).all()), z


def test_hutchinson_variance_rademacher_is_exact_by_enumeration():
    """All 2^d sign vectors are equally likely: the exact variance by enumeration."""
    a, _ = _linear(seed=9, d=4)
    signs = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=4)), dtype=F64)
    quad = torch.einsum("ki,ij,kj->k", signs, a, signs)
    torch.testing.assert_close(quad.mean(), torch.trace(a), rtol=0, atol=1e-12)
    torch.testing.assert_close(hutchinson_variance(a, "rademacher"),
                               quad.var(unbiased=False), rtol=1e-12, atol=1e-12)
    # Rademacher never exceeds Gaussian; a diagonal Jacobian is read exactly by signs
    assert float(hutchinson_variance(a, "rademacher")) < float(hutchinson_variance(a, "gaussian"))
    assert float(hutchinson_variance(torch.diag(torch.arange(4.0)), "rademacher")) == 0.0


def test_negative_control_misscaled_probes_are_flagged():
    """Probes scaled by 1.1 (a wrong normalisation, E[eps eps^T] = 1.21 I) give 1.21 tr J: the
    same 4-stderr check must fail by a wide margin."""
    a = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=F64)) + _linear(d=3)[0]  # tr = 5.74

    def f(y):
        return y @ a.T

    n = 20_000
    noise = 1.1 * draw_probes(1, (n, 3), generator=torch.Generator().manual_seed(10))
    _, est, _ = hutchinson_divergence(f, torch.zeros(n, 3, dtype=F64), noise=noise)
    stderr = math.sqrt(float(hutchinson_variance(a)) * 1.1 ** 4 / n)
    # bias 0.21 tr J = 1.2 against a stderr of 0.016
    assert abs(float(est.mean() - torch.trace(a))) > 10 * stderr


def test_float32_follows_input():
    a, _ = _linear(d=3)
    a32 = a.float()
    x = torch.zeros(4, 3)
    fx, div = exact_divergence(lambda y: y @ a32.T, x)
    assert fx.dtype == div.dtype == torch.float32
    torch.testing.assert_close(div, torch.trace(a32).expand(4))


def test_bad_inputs_raise_clear_errors():
    x = torch.zeros(3, 2, dtype=F64)
    with pytest.raises(TypeError, match="f must be callable"):
        exact_divergence(None, x)
    with pytest.raises(ValueError, match="x's shape"):
        exact_divergence(lambda y: y[:, :1], x)
    with pytest.raises(ValueError, match="differentiable"):
        exact_divergence(lambda y: y.detach() * 2, x)
    # a tensor of the wrong shape is a ValueError; a non-tensor or an integer tensor a TypeError
    with pytest.raises(ValueError, match=r"shape \(n, d\)"):
        exact_divergence(lambda y: y, torch.zeros(3, dtype=F64))
    with pytest.raises(TypeError, match=r"shape \(n, d\)"):
        exact_divergence(lambda y: y, [[0.0, 1.0]])
    with pytest.raises(TypeError, match="dtype torch.int64"):
        hutchinson_divergence(lambda y: y, torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="probe must be one of"):
        hutchinson_divergence(lambda y: y, x, probe="uniform")
    with pytest.raises(ValueError, match="n_probes must be >= 1"):
        hutchinson_divergence(lambda y: y, x, n_probes=0)
    with pytest.raises(ValueError, match="noise must have shape"):
        hutchinson_divergence(lambda y: y, x, noise=torch.zeros(2, 3, 3, dtype=F64))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., d, d\)"):
        hutchinson_variance(torch.zeros(2, 3))
