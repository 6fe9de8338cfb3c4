"""Tests of the uniform distribution on a sphere (labkit.Sphere).

Independent references: numerical quadrature of the Gaussian kernel over the circle and S^2,
Monte-Carlo posterior means and semigroup averages, torch's i0e/i1e and the closed form
coth z - 1/z, and autograd of log_prob. Monte-Carlo checks use fixed seeds; the false-failure
rate quoted for each is what a fresh seed would give.
"""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate

import labkit.targets.sphere as sphere_module
from labkit import Sphere
from labkit.targets.bessel import bessel_ratio

F64 = torch.float64
Z_MAX = 4.5   # two-sided normal tail 6.8e-6 per compared coordinate


def gen(seed):
    return torch.Generator().manual_seed(seed)


def assert_score_is_gradient_of_log_prob(target, x, sigma):
    xr = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(target.log_prob(xr, sigma).sum(), xr)
    score = target.score(x, sigma)
    assert bool(torch.isfinite(grad).all()) and bool(torch.isfinite(score).all())
    # Both sides cancel terms of size (|x| + R) / sigma^2 (score = (D - x) / sigma^2); a sweep of
    # 300 random spheres gave errors <= 1e-15 in that unit, so 1e-13 is a 100x margin.
    scale = (x.norm(dim=-1, keepdim=True) + target.radius) / sigma ** 2
    torch.testing.assert_close(grad / scale, score / scale, rtol=0, atol=1e-13)


def monte_carlo_posterior_mean(target, x, sigma, n, generator):
    """Self-normalised estimate of E[x0 | x] with x0 ~ target, weights N(x; x0, sigma^2 I).

    Returns the estimate, its delta-method standard error (both ``(q, dim)``) and the effective
    sample size ``(sum w)^2 / sum w^2`` of each query.
    """
    x0 = target.sample(n, generator)                                          # (n, dim)
    log_w = -torch.cdist(x, x0).square() / (2 * sigma ** 2)                   # (q, n)
    w = torch.softmax(log_w, -1)
    mean = w @ x0
    se = torch.sqrt(torch.einsum("qn,qnd->qd", w ** 2, (x0[None] - mean[:, None]) ** 2))
    return mean, se, 1 / (w ** 2).sum(-1)


def assert_denoiser_matches_monte_carlo(target, sigma, seed):
    g = gen(seed)
    x = target.sample_noised(3, sigma, g)
    mean, se, ess = monte_carlo_posterior_mean(target, x, sigma, 100_000, g)
    assert bool((ess > 5_000).all()), "sigma too small for a reliable Monte-Carlo estimate"
    error = target.denoise(x, sigma) - mean
    # Coordinates normal to the subspace are 0 in every sample (se = 0): there D must be ~0.
    constant = se < 1e-14
    assert bool((error[constant].abs() < 1e-13).all())
    # 3 queries x dim <= 6 coordinates at 4.5 se: false-failure rate <= 18 * 6.8e-6 = 1.2e-4.
    assert float((error[~constant] / se[~constant]).abs().max()) < Z_MAX


def wrong_order_ratio(nu, z):
    return bessel_ratio(nu + 1, z)


# ---------------------------------------------------------------------------- exactness
@given(k=st.integers(1, 6), codim=st.integers(0, 3), log10_radius=st.floats(-1, 1),
       log10_sigma=st.floats(-4, 3), seed=st.integers(0, 2 ** 16))
def test_score_is_gradient_of_log_prob(k, codim, log10_radius, log10_sigma, seed):
    sigma = 10.0 ** log10_sigma
    sphere = Sphere.random_subspace(k, k + 1 + codim, 10.0 ** log10_radius, generator=gen(seed))
    x = sphere.sample_noised(8, sigma, gen(seed + 1))
    assert bool(torch.isfinite(sphere.log_prob(x, sigma)).all())
    assert_score_is_gradient_of_log_prob(sphere, x, sigma)


def test_wrong_bessel_order_fails_the_autograd_check(monkeypatch):
    # Negative control: the denoiser (hence the score) uses I_(nu+2)/I_(nu+1); log_prob is intact.
    monkeypatch.setattr(sphere_module, "bessel_ratio", wrong_order_ratio)
    sphere = Sphere(2, 4, 1.5)
    with pytest.raises(AssertionError):
        assert_score_is_gradient_of_log_prob(sphere, sphere.sample_noised(8, 0.5, gen(0)), 0.5)


@pytest.mark.parametrize("k, sigma", [(1, 0.7), (2, 0.8), (4, 1.0)])
def test_denoiser_matches_monte_carlo_posterior_mean(k, sigma):
    assert_denoiser_matches_monte_carlo(Sphere(k, k + 2, radius=1.3), sigma, seed=10 + k)


def test_wrong_bessel_order_fails_the_monte_carlo_check(monkeypatch):
    # Negative control: at z ~ 2, I_2/I_1 and I_1/I_0 differ by ~0.2 R, ~60 standard errors.
    monkeypatch.setattr(sphere_module, "bessel_ratio", wrong_order_ratio)
    with pytest.raises(AssertionError):
        assert_denoiser_matches_monte_carlo(Sphere(1, 3, radius=1.3), 0.7, seed=11)


@given(k=st.integers(1, 5), codim=st.integers(0, 3), log10_sigma=st.floats(-4, 3),
       seed=st.integers(0, 2 ** 16))
def test_denoiser_is_tweedie(k, codim, log10_sigma, seed):
    sigma = 10.0 ** log10_sigma
    sphere = Sphere.random_subspace(k, k + 1 + codim, 2.0, generator=gen(seed))
    x = sphere.sample_noised(8, sigma, gen(seed + 1))
    # Round-off of sigma^2 * score ~ eps * (|x| + R): 1e-13 (|x| + R) is a 100x margin.
    atol = 1e-13 * float(x.norm(dim=-1).max() + 2.0)
    torch.testing.assert_close(sphere.denoise(x, sigma), x + sigma ** 2 * sphere.score(x, sigma),
                               rtol=0, atol=atol)


def test_denoiser_matches_closed_forms_of_circle_and_two_sphere():
    # Circle: R I_1(z)/I_0(z) u (torch's Cephes i0e/i1e); S^2: R (coth z - 1/z) u. At z in
    # [0.05, 200] coth z - 1/z loses at most 3/z^2 ulps ~ 2e-13 relative to cancellation.
    x = torch.tensor([[0.3, -0.2, 0.5], [1.1, 0.9, -0.4], [-2.0, 0.1, 0.0]], dtype=F64)
    radius = 1.7
    for sigma in (0.1, 0.5, 2.0):
        circle, two_sphere = Sphere(1, 3, radius), Sphere(2, 3, radius)
        r_circle = x[:, :2].norm(dim=-1)
        z = radius * r_circle / sigma ** 2
        expected = torch.cat([(radius * torch.special.i1e(z) / torch.special.i0e(z)
                               / r_circle)[:, None] * x[:, :2], torch.zeros(3, 1, dtype=F64)], -1)
        torch.testing.assert_close(circle.denoise(x, sigma), expected, rtol=1e-13, atol=1e-15)
        r = x.norm(dim=-1)
        z = radius * r / sigma ** 2
        expected = (radius * (1 / torch.tanh(z) - 1 / z) / r)[:, None] * x
        torch.testing.assert_close(two_sphere.denoise(x, sigma), expected, rtol=1e-12, atol=1e-15)


def circle_log_prob_by_quadrature(x, radius, sigma):
    """log p_sigma for the circle in the first two of three coordinates, by adaptive quadrature."""
    theta = math.atan2(x[1], x[0])
    r = math.hypot(x[0], x[1])
    # The kernel divided by its maximum exp(-(r - R)^2 / (2 s^2)), centred on its peak.
    def kernel(t):
        sq = (x[0] - radius * math.cos(t)) ** 2 + (x[1] - radius * math.sin(t)) ** 2
        return math.exp(-(sq - (r - radius) ** 2) / (2 * sigma ** 2))
    value, error = integrate.quad(kernel, theta - math.pi, theta + math.pi, points=[theta],
                                  epsabs=0, epsrel=1e-13, limit=400)
    assert error < 1e-12 * value
    return (math.log(value / (2 * math.pi)) - ((r - radius) ** 2 + x[2] ** 2) / (2 * sigma ** 2)
            - 1.5 * math.log(2 * math.pi * sigma ** 2))


@pytest.mark.parametrize("sigma", [0.05, 0.3, 2.0])
def test_circle_log_prob_matches_quadrature(sigma):
    circle = Sphere(1, 3, radius=1.5)
    x = circle.sample_noised(4, sigma, gen(3))
    expected = torch.tensor([circle_log_prob_by_quadrature(xi.tolist(), 1.5, sigma) for xi in x],
                            dtype=F64)
    # quad's relative error <= 1e-12 moves log p by <= 1e-12; 1e-11 absolute is a 10x margin.
    torch.testing.assert_close(circle.log_prob(x, sigma), expected, rtol=1e-13, atol=1e-11)


def two_sphere_log_prob_by_quadrature(x, radius, sigma):
    r = math.sqrt(sum(v * v for v in x))
    def kernel(phi, theta):
        u = (math.sin(theta) * math.cos(phi), math.sin(theta) * math.sin(phi), math.cos(theta))
        sq = sum((xi - radius * ui) ** 2 for xi, ui in zip(x, u))
        return math.exp(-(sq - (r - radius) ** 2) / (2 * sigma ** 2)) * math.sin(theta)
    value, error = integrate.dblquad(kernel, 0, math.pi, 0, 2 * math.pi, epsabs=0, epsrel=1e-10)
    assert error < 1e-9 * value
    return (math.log(value / (4 * math.pi)) - (r - radius) ** 2 / (2 * sigma ** 2)
            - 1.5 * math.log(2 * math.pi * sigma ** 2))


@pytest.mark.parametrize("sigma", [0.4, 1.0])
def test_two_sphere_log_prob_matches_quadrature(sigma):
    two_sphere = Sphere(2, 3, radius=1.2)
    x = torch.tensor([[0.4, -0.9, 0.7], [1.5, 0.3, -0.2]], dtype=F64)
    expected = torch.tensor([two_sphere_log_prob_by_quadrature(xi.tolist(), 1.2, sigma)
                             for xi in x], dtype=F64)
    # dblquad's relative error <= 1e-9 (asserted) moves log p by <= 1e-9.
    torch.testing.assert_close(two_sphere.log_prob(x, sigma), expected, rtol=0, atol=2e-9)


def test_noised_circle_density_integrates_to_one():
    # The trapezoid rule on a smooth, rapidly decaying integrand converges geometrically in 1/h;
    # at h = sigma / 10 the discretisation error is far below 1e-10, and the mass outside the
    # box |x_i| <= R + 12 sigma is < exp(-72).
    radius, sigma = 1.0, 0.4
    half = radius + 12 * sigma
    grid = torch.linspace(-half, half, int(2 * half / (sigma / 10)) + 1, dtype=F64)
    h = float(grid[1] - grid[0])
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    density = Sphere(1, 2, radius).log_prob(torch.stack([xx, yy], -1).reshape(-1, 2), sigma).exp()
    assert abs(float(density.sum()) * h * h - 1) < 1e-10


def test_noised_two_sphere_density_integrates_to_one():
    # p_sigma of S^2 in R^3 is radial, so its mass is 4 pi int_0^inf p(rho) rho^2 d rho.
    two_sphere, sigma = Sphere(2, 3, radius=1.0), 0.3
    def radial(rho):
        x = torch.tensor([[0.0, 0.0, rho]], dtype=F64)
        return float(two_sphere.log_prob(x, sigma).exp()) * rho ** 2
    mass, error = integrate.quad(radial, 0, 1 + 14 * sigma, points=[1.0], epsabs=1e-13)
    assert abs(4 * math.pi * mass - 1) < 1e-10


def assert_semigroup(sphere, x, sigma1, sigma2, target_sigma, seed):
    # E_eps p_(s1)(x + s2 eps) = p_(sqrt(s1^2 + s2^2))(x): a mean of n bounded terms, compared at
    # 4.5 standard errors (3 points: false-failure rate 2e-5).
    n = 40_000
    eps = torch.randn(n, sphere.dim, generator=gen(seed), dtype=F64)
    for xi in x:
        values = sphere.log_prob(xi + sigma2 * eps, sigma1).exp()
        se = float(values.std() / math.sqrt(n))
        exact = float(sphere.log_prob(xi[None], target_sigma).exp())
        assert abs(float(values.mean()) - exact) < Z_MAX * se


def test_semigroup_identity():
    sphere, s1, s2 = Sphere(2, 4, radius=1.0), 0.4, 0.3
    x = sphere.sample_noised(3, 0.5, gen(5))
    assert_semigroup(sphere, x, s1, s2, math.hypot(s1, s2), seed=6)


def test_semigroup_check_detects_wrong_composition():
    # Negative control: composing noise levels linearly (0.7 instead of 0.5) is caught.
    sphere, s1, s2 = Sphere(2, 4, radius=1.0), 0.4, 0.3
    with pytest.raises(AssertionError):
        assert_semigroup(sphere, sphere.sample_noised(3, 0.5, gen(5)), s1, s2, s1 + s2, seed=6)


# ---------------------------------------------------------------------------- geometry
def test_random_subspace_sphere_is_a_rotated_coordinate_sphere():
    k, ambient, radius, sigma = 2, 6, 1.4, 0.35
    rotated = Sphere.random_subspace(k, ambient, radius, generator=gen(7))
    q = rotated.basis
    complement = torch.linalg.qr(q, mode="complete")[0][:, k + 1:]
    u = torch.cat([q, complement], -1)                           # orthogonal, u[:, :3] = q
    coordinate = Sphere(k, ambient, radius)
    x = rotated.sample_noised(16, sigma, gen(8))
    # Rotations are exact up to round-off of a 6x6 matmul (~1e-15).
    torch.testing.assert_close(rotated.log_prob(x, sigma), coordinate.log_prob(x @ u, sigma),
                               rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rotated.denoise(x, sigma), coordinate.denoise(x @ u, sigma) @ u.T,
                               rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rotated.sample(8, gen(9)), coordinate.sample(8, gen(9)) @ u.T,
                               rtol=1e-12, atol=1e-12)


def test_random_subspace_is_reproducible_and_orthonormal():
    a = Sphere.random_subspace(3, 7, generator=gen(1))
    b = Sphere.random_subspace(3, 7, generator=gen(1))
    assert torch.equal(a.basis, b.basis)
    assert not torch.equal(a.basis, Sphere.random_subspace(3, 7, generator=gen(2)).basis)
    torch.testing.assert_close(a.basis.T @ a.basis, torch.eye(4, dtype=F64), rtol=0, atol=1e-14)


def test_samples_are_uniform_on_the_sphere():
    k, ambient, radius, n = 2, 5, 2.0, 50_000
    sphere = Sphere.random_subspace(k, ambient, radius, generator=gen(4))
    x = sphere.sample(n, gen(5))
    assert torch.equal(x, sphere.sample(n, gen(5)))
    y = x @ sphere.basis
    torch.testing.assert_close(y.norm(dim=-1), torch.full((n,), radius, dtype=F64),
                               rtol=1e-14, atol=0)
    torch.testing.assert_close(x - y @ sphere.basis.T, torch.zeros_like(x), rtol=0, atol=1e-14)
    # Uniform on S^k: E y = 0 and E y y^T = R^2 / (k + 1) I. 3 + 6 moments at 4.5 se: a fresh
    # seed fails with probability < 1e-4.
    second = (y[:, :, None] * y[:, None, :]).reshape(n, -1)
    for moments, expected in ((y, torch.zeros(k + 1, dtype=F64)),
                              (second, (radius ** 2 / (k + 1) * torch.eye(k + 1, dtype=F64))
                               .reshape(-1))):
        se = moments.std(0) / math.sqrt(n)
        assert float(((moments.mean(0) - expected).abs() / se.clamp_min(1e-300)).max()) < Z_MAX


def test_centre_of_the_subspace():
    # At y = 0 the ratio vanishes: D = 0, score = -x / sigma^2, and
    # log p = const - (R^2 + |x|^2) / (2 s^2) - nu log 2 - lgamma(nu + 1) with nu = (k - 1)/2.
    k, radius, sigma = 3, 1.5, 0.6
    sphere = Sphere(k, 6, radius)
    x = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.3, -0.4]], dtype=F64)
    nu = (k - 1) / 2
    expected = (-3 * math.log(2 * math.pi * sigma ** 2) + math.lgamma((k + 1) / 2)
                - (radius ** 2 + 0.25) / (2 * sigma ** 2) - math.lgamma(nu + 1))
    torch.testing.assert_close(sphere.log_prob(x, sigma), torch.tensor([expected], dtype=F64),
                               rtol=1e-14, atol=1e-14)
    assert torch.equal(sphere.denoise(x, sigma), torch.zeros_like(x))
    torch.testing.assert_close(sphere.score(x, sigma), -x / sigma ** 2, rtol=1e-15, atol=0)
    xr = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(sphere.log_prob(xr, sigma).sum(), xr)
    torch.testing.assert_close(grad, -x / sigma ** 2, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("sigma", [1e-4, 1e-6])
def test_small_sigma_denoiser_projects_onto_the_sphere(sigma):
    # D = R R_nu(z) u with 1 - R_nu(z) ~ (2 nu + 1) / (2 z): the distance to the projection R u is
    # R (2 nu + 1) sigma^2 / (2 R r) to first order; we allow twice that.
    k, radius = 2, 1.0
    sphere = Sphere(k, 4, radius)
    x = torch.tensor([[0.6, -0.7, 0.4, 2.0], [3.0, 0.5, -0.1, -1.0]], dtype=F64)
    y = x[:, :3]
    r = y.norm(dim=-1, keepdim=True)
    projection = torch.cat([radius * y / r, torch.zeros(2, 1, dtype=F64)], -1)
    bound = 2 * (k * sigma ** 2 / (2 * r))
    assert bool(((sphere.denoise(x, sigma) - projection).norm(dim=-1, keepdim=True) < bound).all())


# ---------------------------------------------------------------------------- dtypes and errors
@given(k=st.integers(1, 5), codim=st.integers(0, 3), log10_sigma=st.floats(-4, 3),
       seed=st.integers(0, 2 ** 16))
def test_float32_agrees_with_float64(k, codim, log10_sigma, seed):
    sigma = 10.0 ** log10_sigma
    sphere = Sphere.random_subspace(k, k + 1 + codim, 1.3, generator=gen(seed))
    x = sphere.sample_noised(8, sigma, gen(seed + 1))
    x32 = x.float()
    size = x.norm(dim=-1) + sphere.radius
    # float32 round-off u = 6e-8 on terms of size (|x| + R)^2 / sigma^2 (log_prob), (|x| + R)
    # (denoiser) and (|x| + R) / sigma^2 (score) that cancel; a sweep of 300 random spheres gave
    # <= 4u in those units, so 32u is an 8x margin.
    tol = 32 * 6e-8
    out = {name: (getattr(sphere, name)(x, sigma), getattr(sphere, name)(x32, sigma))
           for name in ("log_prob", "denoise", "score")}
    assert all(v32.dtype == torch.float32 for _, v32 in out.values())
    for name, unit in (("log_prob", 1 + size ** 2 / sigma ** 2), ("denoise", size[:, None]),
                       ("score", size[:, None] / sigma ** 2)):
        v64, v32 = out[name]
        if name == "log_prob":
            unit = unit + v64.abs()
        torch.testing.assert_close(v32.double() / unit, v64 / unit, rtol=0, atol=tol)


def test_attributes_and_repr():
    sphere = Sphere(2, 5, radius=3)
    assert (sphere.k, sphere.dim, sphere.radius, sphere.has_density) == (2, 5, 3.0, False)
    assert torch.equal(sphere.basis, torch.eye(5, 3, dtype=F64))
    assert "Sphere(k=2" in repr(sphere)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(k=3, ambient_dim=3), ValueError, "k must satisfy"),
    (dict(k=0, ambient_dim=3), ValueError, "k must be >= 1"),
    (dict(k=1.5, ambient_dim=3), TypeError, "k must be an int"),
    (dict(k=1, ambient_dim=1), ValueError, "ambient_dim"),
    (dict(k=2500, ambient_dim=3000), ValueError, "k must be <="),
    (dict(k=1, ambient_dim=2, radius=0.0), ValueError, "radius"),
    (dict(k=1, ambient_dim=2, radius=-1.0), ValueError, "radius"),
    (dict(k=1, ambient_dim=2, radius=float("inf")), ValueError, "radius"),
    (dict(k=1, ambient_dim=2, radius="big"), TypeError, "radius"),
    (dict(k=1, ambient_dim=3, basis=torch.eye(3, dtype=F64)), ValueError, "basis must have shape"),
    (dict(k=1, ambient_dim=3, basis=torch.ones(3, 2, dtype=F64)), ValueError, "orthonormal"),
    (dict(k=1, ambient_dim=3, basis=2 * torch.eye(3, 2, dtype=F64)), ValueError, "orthonormal"),
    (dict(k=1, ambient_dim=3, basis=torch.full((3, 2), float("nan"))), ValueError, "basis"),
])
def test_bad_construction(kwargs, error, match):
    with pytest.raises(error, match=match):
        Sphere(**kwargs)


def test_bad_calls():
    sphere = Sphere(1, 3)
    x = torch.zeros(2, 3, dtype=F64)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        sphere.log_prob(x, 0.0)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        sphere.score(x, torch.tensor([0.5, 0.0], dtype=F64))
    with pytest.raises(ValueError, match="sigma"):
        sphere.denoise(x, -0.1)
    with pytest.raises(ValueError, match=r"x must have shape \(n, 3\)"):
        sphere.log_prob(torch.zeros(2, 2, dtype=F64), 0.5)
    with pytest.raises(ValueError, match="x must be finite"):
        sphere.denoise(torch.full((1, 3), float("nan"), dtype=F64), 0.5)
    with pytest.raises(TypeError, match="generator"):
        Sphere.random_subspace(1, 3, generator=0)
