"""Tests of isometric embeddings (labkit.Embedded) and products (labkit.Product).

Independent references: a point cloud embedded by ``Q`` is the point cloud of the points ``Q y_i``,
and a product of two point clouds is the point cloud of all pairs; both are checked at every noise
level. Scores are checked against autograd of log_prob.
"""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from labkit import Embedded, Empirical, Product, Sphere, Target
from labkit.targets.embedding import random_orthonormal_basis

F64 = torch.float64


def gen(seed):
    return torch.Generator().manual_seed(seed)


class IsotropicGaussian(Target):
    """N(mean, var I): a test double with a density (p_sigma = N(mean, (var + sigma^2) I))."""

    def __init__(self, mean, var):
        super().__init__()
        self.dim, self.var = len(mean), var
        self._register(mean=torch.tensor(mean, dtype=F64))

    def _sample(self, n, generator, like):
        eps = torch.randn(n, self.dim, generator=generator, dtype=like.dtype, device=like.device)
        return self._params(like)["mean"] + math.sqrt(self.var) * eps

    def _log_prob(self, x, sigma):
        v = self.var + sigma ** 2
        sq = (x - self._params(x)["mean"]).square().sum(-1)
        return -sq / (2 * v) - 0.5 * self.dim * torch.log(2 * math.pi * v)

    def _score(self, x, sigma):
        return (self._params(x)["mean"] - x) / (self.var + sigma ** 2)[:, None]


def cloud(n, d, seed, scale=1.0):
    return scale * torch.randn(n, d, generator=gen(seed), dtype=F64)


def assert_same_target(a, b, x, sigma):
    """log_prob, score and denoiser of ``a`` and the point cloud ``b`` agree at ``x``.

    Round-off: both sides cancel terms of size |x - y|^2 / sigma^2 (log) and |x - y| / sigma^2
    (score) in float64; 1e-12 in those units is a 1,000x margin over eps.
    """
    size = 1 + x.norm(dim=-1) + float(b.points.norm(dim=-1).max())
    log_unit = 1 + size ** 2 / sigma ** 2
    torch.testing.assert_close(a.log_prob(x, sigma) / log_unit, b.log_prob(x, sigma) / log_unit,
                               rtol=0, atol=1e-12)
    unit = (size / sigma ** 2)[:, None]
    torch.testing.assert_close(a.score(x, sigma) / unit, b.score(x, sigma) / unit,
                               rtol=0, atol=1e-12)
    torch.testing.assert_close(a.denoise(x, sigma) / size[:, None],
                               b.denoise(x, sigma) / size[:, None], rtol=0, atol=1e-12)


def assert_score_is_gradient_of_log_prob(target, x, sigma):
    xr = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(target.log_prob(xr, sigma).sum(), xr)
    score = target.score(x, sigma)
    assert bool(torch.isfinite(grad).all()) and bool(torch.isfinite(score).all())
    # Terms of size (1 + |x|) / sigma^2 cancel; 1e-12 in that unit is a 1,000x margin over eps.
    unit = (1 + x.norm(dim=-1, keepdim=True)) / sigma ** 2
    torch.testing.assert_close(grad / unit, score / unit, rtol=0, atol=1e-12)


def assert_tweedie(target, x, sigma):
    # D and x + sigma^2 score are computed by different hooks; they differ by round-off ~ eps |x|.
    atol = 1e-13 * (1 + float(x.norm(dim=-1).max()))
    torch.testing.assert_close(target.denoise(x, sigma), x + sigma ** 2 * target.score(x, sigma),
                               rtol=0, atol=atol)


# ---------------------------------------------------------------------------- Embedded
@given(k=st.integers(1, 4), codim=st.integers(0, 5), n_points=st.integers(1, 12),
       log10_sigma=st.floats(-4, 3), seed=st.integers(0, 2 ** 16))
def test_embedded_cloud_is_the_cloud_of_embedded_points(k, codim, n_points, log10_sigma, seed):
    sigma = 10.0 ** log10_sigma
    points = cloud(n_points, k, seed)
    basis = random_orthonormal_basis(k + codim, k, gen(seed + 1))
    embedded = Embedded(Empirical(points), basis)
    direct = Empirical(points @ basis.T)
    x = direct.sample_noised(6, sigma, gen(seed + 2))
    assert_same_target(embedded, direct, x, sigma)
    assert_score_is_gradient_of_log_prob(embedded, x, sigma)
    assert_tweedie(embedded, x, sigma)
    assert torch.equal(embedded.sample(5, gen(seed)), direct.sample(5, gen(seed)))


class WrongCodimension(Embedded):
    """Planted defect: the normal Gaussian's normaliser counts D instead of D - k dimensions."""

    def _log_prob(self, x, sigma):
        extra = 0.5 * self.target.dim * torch.log(2 * math.pi * sigma ** 2)
        return super()._log_prob(x, sigma) - extra


def test_wrong_codimension_fails_the_point_cloud_check():
    points, basis = cloud(5, 2, 0), random_orthonormal_basis(4, 2, gen(1))
    x = cloud(6, 4, 2)
    with pytest.raises(AssertionError):
        assert_same_target(WrongCodimension(Empirical(points), basis),
                           Empirical(points @ basis.T), x, 0.5)


@given(k=st.integers(1, 4), codim=st.integers(1, 4), log10_sigma=st.floats(-4, 3),
       seed=st.integers(0, 2 ** 16))
def test_embedded_sphere_matches_sphere_with_that_basis(k, codim, log10_sigma, seed):
    sigma = 10.0 ** log10_sigma
    basis = random_orthonormal_basis(k + 1 + codim, k + 1, gen(seed))
    embedded = Embedded(Sphere(k, k + 1, radius=1.5), basis)
    sphere = Sphere(k, k + 1 + codim, radius=1.5, basis=basis)
    x = sphere.sample_noised(6, sigma, gen(seed + 1))
    assert_score_is_gradient_of_log_prob(embedded, x, sigma)
    assert_tweedie(embedded, x, sigma)
    # The same hooks run in a different order: round-off of order eps |x|^2 / sigma^2.
    unit = 1 + (1.5 + x.norm(dim=-1)) ** 2 / sigma ** 2
    torch.testing.assert_close(embedded.log_prob(x, sigma) / unit, sphere.log_prob(x, sigma) / unit,
                               rtol=0, atol=1e-13)


def test_embedding_with_density_allows_sigma_zero():
    gaussian = IsotropicGaussian([0.5, -1.0], 0.3)
    rotation = random_orthonormal_basis(2, 2, gen(0))
    square = Embedded(gaussian, rotation)
    assert square.has_density
    x = cloud(5, 2, 1)
    for sigma in (0.0, 0.7):
        torch.testing.assert_close(square.log_prob(x, sigma),
                                   gaussian.log_prob(x @ rotation, sigma), rtol=1e-14, atol=1e-14)
        assert_score_is_gradient_of_log_prob(square, x, max(sigma, 1.0))
    tall = Embedded(gaussian, random_orthonormal_basis(3, 2, gen(2)))
    assert not tall.has_density
    with pytest.raises(ValueError, match="sigma must be > 0"):
        tall.log_prob(cloud(2, 3, 3), 0.0)


def test_embedded_random_is_reproducible():
    target = Sphere(1, 2)
    a, b = Embedded.random(target, 5, gen(4)), Embedded.random(target, 5, gen(4))
    assert torch.equal(a.basis, b.basis) and a.dim == 5 and a.target is target
    torch.testing.assert_close(a.basis.T @ a.basis, torch.eye(2, dtype=F64), rtol=0, atol=1e-14)


def test_embedded_float32_agrees_with_float64():
    embedded = Embedded.random(Empirical(cloud(7, 3, 5)), 6, gen(6))
    x = embedded.sample_noised(10, 0.5, gen(7))
    # float32 round-off u = 6e-8 on O(10)-sized cancelling terms; 2e-5 absolute is a ~30x margin.
    for name in ("log_prob", "score", "denoise"):
        v64, v32 = getattr(embedded, name)(x, 0.5), getattr(embedded, name)(x.float(), 0.5)
        assert v32.dtype == torch.float32
        torch.testing.assert_close(v32.double(), v64, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("target, basis, error, match", [
    ("cloud", torch.eye(3, 2, dtype=F64), TypeError, "target must be"),
    (Sphere(1, 2), torch.eye(3, 3, dtype=F64), ValueError, r"basis must have shape \(D, 2\)"),
    (Sphere(1, 2), torch.eye(2, 3, dtype=F64)[:1], ValueError, "basis must have shape"),
    (Sphere(1, 2), torch.ones(3, 2, dtype=F64), ValueError, "orthonormal"),
    (Sphere(1, 2), torch.eye(3, dtype=F64)[:, 0], ValueError, "basis must have shape"),
    (Sphere(1, 2), [["a", "b"]], TypeError, "basis"),
])
def test_embedded_bad_input(target, basis, error, match):
    with pytest.raises(error, match=match):
        Embedded(target, basis)


def test_embedded_random_bad_input():
    with pytest.raises(ValueError, match="ambient_dim"):
        Embedded.random(Sphere(2, 3), 2)
    with pytest.raises(TypeError, match="target"):
        Embedded.random(None, 4)


# ---------------------------------------------------------------------------- Product
def pairs_cloud(a, b):
    """All pairs (a_i, b_j): the empirical distribution of the product of two clouds."""
    na, nb = a.shape[0], b.shape[0]
    return torch.cat([a.repeat_interleave(nb, 0), b.repeat(na, 1)], -1)


@given(na=st.integers(1, 6), nb=st.integers(1, 6), da=st.integers(1, 3), db=st.integers(1, 3),
       log10_sigma=st.floats(-4, 3), seed=st.integers(0, 2 ** 16))
def test_product_of_clouds_is_the_cloud_of_pairs(na, nb, da, db, log10_sigma, seed):
    sigma = 10.0 ** log10_sigma
    a, b = cloud(na, da, seed), cloud(nb, db, seed + 1)
    product, pairs = Product(Empirical(a), Empirical(b)), Empirical(pairs_cloud(a, b))
    x = pairs.sample_noised(6, sigma, gen(seed + 2))
    assert_same_target(product, pairs, x, sigma)
    assert_tweedie(product, x, sigma)


class SwappedProduct(Product):
    """Planted defect: the denoiser concatenates the factors in reverse order."""

    def _denoise(self, x, sigma):
        a, b = self.factors
        return torch.cat([b._denoise(x[:, a.dim:], sigma), a._denoise(x[:, :a.dim], sigma)], -1)


def test_swapped_product_fails_the_cloud_of_pairs_check():
    a, b = cloud(3, 2, 0), cloud(4, 1, 1)
    x = cloud(5, 3, 2)
    with pytest.raises(AssertionError):
        assert_same_target(SwappedProduct(Empirical(a), Empirical(b)), Empirical(pairs_cloud(a, b)),
                           x, 0.5)


@given(log10_sigma=st.floats(-4, 3), seed=st.integers(0, 2 ** 16))
def test_torus_is_the_sum_and_concatenation_of_circles(log10_sigma, seed):
    sigma = 10.0 ** log10_sigma
    inner, outer = Sphere(1, 2, radius=1.0), Sphere(1, 2, radius=2.5)
    torus = Product(outer, inner)
    x = torus.sample_noised(8, sigma, gen(seed))
    # Same hooks on the same slices: equal up to the round-off of one addition.
    torch.testing.assert_close(torus.log_prob(x, sigma),
                               outer.log_prob(x[:, :2], sigma) + inner.log_prob(x[:, 2:], sigma),
                               rtol=1e-15, atol=0)
    blocks = [outer.denoise(x[:, :2], sigma), inner.denoise(x[:, 2:], sigma)]
    assert torch.equal(torus.denoise(x, sigma), torch.cat(blocks, -1))
    scale = (x.norm(dim=-1, keepdim=True) + 2.5) / sigma ** 2
    xr = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(torus.log_prob(xr, sigma).sum(), xr)
    # As for the sphere: 1e-13 in units of (|x| + R) / sigma^2 (a 100x margin).
    torch.testing.assert_close(grad / scale, torus.score(x, sigma) / scale, rtol=0, atol=1e-13)


def test_product_samples_factors_in_order_from_one_generator():
    circle, gaussian = Sphere(1, 2), IsotropicGaussian([1.0, 2.0, 3.0], 0.5)
    g = gen(9)
    expected = torch.cat([circle.sample(6, g), gaussian.sample(6, g)], -1)
    assert torch.equal(Product(circle, gaussian).sample(6, gen(9)), expected)


def test_product_density_flags_and_sigma_zero():
    g1, g2 = IsotropicGaussian([0.0], 1.0), IsotropicGaussian([1.0, -1.0], 0.2)
    dense = Product(g1, g2)
    assert dense.has_density and dense.dim == 3
    x = cloud(4, 3, 3)
    torch.testing.assert_close(dense.log_prob(x, 0.0),
                               g1.log_prob(x[:, :1], 0.0) + g2.log_prob(x[:, 1:], 0.0),
                               rtol=1e-15, atol=0)
    assert_score_is_gradient_of_log_prob(dense, x, 1.0)
    mixed = Product(g1, Sphere(1, 2))
    assert not mixed.has_density
    with pytest.raises(ValueError, match="sigma must be > 0"):
        mixed.score(x, 0.0)


def test_product_chunks_like_its_smallest_factor():
    small = Empirical(cloud(3, 2, 0))
    small.chunk_size = 4
    product = Product(Sphere(1, 2), small)
    assert product.chunk_size == 4
    x = product.sample_noised(11, 0.3, gen(1))
    unchunked = Product(Sphere(1, 2), Empirical(cloud(3, 2, 0)))
    torch.testing.assert_close(product.log_prob(x, 0.3), unchunked.log_prob(x, 0.3),
                               rtol=1e-15, atol=0)


def test_product_bad_input():
    with pytest.raises(ValueError, match="factors must contain at least one"):
        Product()
    with pytest.raises(TypeError, match="factors must be labkit Targets"):
        Product(Sphere(1, 2), 3)


# ---------------------------------------------------------------------------- float32 bases
EPS32 = torch.finfo(torch.float32).eps


def test_float32_basis_is_accepted_and_reorthonormalised():
    """A float32 QR basis (max |Q^T Q - I| ~ 3.6e-7, rejected by the old 1e-8 tolerance) is
    accepted and stored re-orthonormalised in float64, spanning the same subspace with the
    same orientation."""
    a = torch.randn(6, 3, generator=gen(0))  # float32
    q32 = torch.linalg.qr(a)[0]
    err = float((q32.double().T @ q32.double() - torch.eye(3, dtype=F64)).abs().max())
    assert 1e-8 < err <= 1e3 * EPS32
    emb = Embedded(Empirical(cloud(5, 3, 1)), q32)
    q = emb.basis
    assert q.dtype == F64
    # Q^T Q = I to float64 round-off of a 6 x 3 QR (a few eps64; 1e-14 is ~50 eps64).
    torch.testing.assert_close(q.T @ q, torch.eye(3, dtype=F64), rtol=0, atol=1e-14)
    # With A = Q R and A^T A = I + E, R = I + E / 2 + O(E^2), so |Q - A| <= |E|_2 / 2 + O(E^2)
    # <= 3 max|E| / 2 (k = 3): the tolerance 3 max|E| is a 2x margin. A sign flip would give 2.
    assert float((q - q32.double()).abs().max()) <= 3 * err


def test_float32_basis_gives_float64_results_within_its_rounding():
    """``Embedded(q, Q.float())`` against ``Embedded(q, Q)``: first-order perturbation bounds.

    The stored basis is ``Q' = R Q`` for a rotation with ``|R - I|_2 <= 2 |Q' - Q|_F =: 2 dq``
    (dq ~ 2e-8 here, float32 rounding), so ``p'(x) = p(R^T x)`` gives ``|d log p| <= |score|
    |x| 2 dq`` and ``D'(x) = R D(R^T x)`` gives ``|dD| <= 2 dq (|D| + |J| |x|)`` with the
    denoiser Jacobian ``|J| = |Cov[x0 | x]| / sigma^2 <= (2 max|y_i|)^2 / sigma^2``. The
    tolerances are twice these bounds.
    """
    q64 = random_orthonormal_basis(6, 3, gen(2))
    points = cloud(7, 3, 3)
    e64, e32 = Embedded(Empirical(points), q64), Embedded(Empirical(points), q64.float())
    dq = float(torch.linalg.matrix_norm(e32.basis - q64))
    assert 0 < dq <= 3 * 6 * EPS32
    sigma = 0.5
    x = e64.sample_noised(20, sigma, gen(4))
    xn = x.norm(dim=1)
    tol_lp = 4 * dq * e64.score(x, sigma).norm(dim=1) * xn
    assert bool(((e32.log_prob(x, sigma) - e64.log_prob(x, sigma)).abs() <= tol_lp).all())
    d64 = e64.denoise(x, sigma)
    jac = (2 * float(points.norm(dim=1).max())) ** 2 / sigma ** 2
    tol_d = 4 * dq * (d64.norm(dim=1) + jac * xn)
    assert bool(((e32.denoise(x, sigma) - d64).norm(dim=1) <= tol_d).all())


def test_float64_basis_is_kept_exactly():
    q = random_orthonormal_basis(5, 2, gen(5))
    assert torch.equal(Embedded(Empirical(cloud(3, 2, 0)), q).basis, q)


@pytest.mark.parametrize("basis", [
    torch.eye(3, 2) + 1e-3 * torch.ones(3, 2),  # float32, error 2e-3 >> 1e3 eps32
    torch.eye(3, 2, dtype=F64) + 1e-7 * torch.ones(3, 2, dtype=F64),  # float64 keeps 1e-8
])
def test_non_orthonormal_bases_are_still_rejected(basis):
    with pytest.raises(ValueError, match="basis must have orthonormal columns"):
        Embedded(Empirical(cloud(3, 2, 0)), basis)
