"""Tests of the point-cloud target and its memorising denoiser (labkit.Empirical).

The reference is a direct float64 numpy evaluation: explicit differences x - y_i (no matmul
expansion) and scipy's logsumexp/softmax.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate
from scipy.special import logsumexp, softmax

from labkit import Empirical

F64 = torch.float64


def gen(seed):
    return torch.Generator().manual_seed(seed)


def reference(points, x, sigma):
    """log p_sigma and the posterior mean from explicit squared distances."""
    y, xs = points.numpy(), x.numpy()
    sq = ((xs[:, None, :] - y[None, :, :]) ** 2).sum(-1)                   # (m, N)
    logits = -sq / (2 * sigma ** 2)
    log_p = (logsumexp(logits, -1) - math.log(y.shape[0])
             - 0.5 * y.shape[1] * math.log(2 * math.pi * sigma ** 2))
    return log_p, softmax(logits, -1) @ y


def naive_log_prob(points, x, sigma):
    """Planted defect: |x|^2 - 2 x.y + |y|^2 from a matmul, which cancels at small sigma."""
    sq = x.square().sum(-1, keepdim=True) - 2 * x @ points.T + points.square().sum(-1)
    return (torch.logsumexp(-sq / (2 * sigma ** 2), -1) - math.log(points.shape[0])
            - 0.5 * points.shape[1] * math.log(2 * math.pi * sigma ** 2))


def spread(points):
    return float((points - points.mean(0)).norm(dim=-1).max())


def round_off_unit(points, x, sigma):
    """Size of the terms that cancel in the logit gaps: |y_c| (|y_c| + |x_c|) / sigma^2 with
    y_c, x_c centred on the cloud's mean (the implementation centres before its matmul)."""
    x_spread = float((x - points.mean(0)).norm(dim=-1).max())
    return 1 + spread(points) * (spread(points) + x_spread) / sigma ** 2


def assert_log_prob_matches_reference(points, x, sigma, log_prob_fn, atol):
    expected, _ = reference(points, x, sigma)
    np.testing.assert_allclose(log_prob_fn(x, sigma).numpy(), expected, rtol=1e-13, atol=atol)


def offset_cloud(n, d, seed, offset):
    return offset + torch.randn(n, d, generator=gen(seed), dtype=F64)


@given(n=st.integers(1, 30), d=st.integers(1, 5), log10_sigma=st.floats(-4, 3),
       offset=st.sampled_from([0.0, 30.0]), seed=st.integers(0, 2 ** 16))
def test_matches_direct_reference(n, d, log10_sigma, offset, seed):
    sigma = 10.0 ** log10_sigma
    points = offset_cloud(n, d, seed, offset)
    target = Empirical(points)
    x = target.sample_noised(7, sigma, gen(seed + 1))
    # Logit gaps carry round-off eps * unit; 1e-13 * unit is a ~500x margin. The nearest point's
    # distance is exact in both, so offset clouds need no larger tolerance.
    unit = round_off_unit(points, x, sigma)
    assert_log_prob_matches_reference(points, x, sigma, target.log_prob, atol=1e-13 * unit)
    _, mean = reference(points, x, sigma)
    # Weights then move by <= 1e-13 * unit relative, the mean by that times the spread.
    np.testing.assert_allclose(target.denoise(x, sigma).numpy(), mean, rtol=1e-13,
                               atol=1e-13 * unit * (1 + spread(points)))


@given(n=st.integers(1, 30), d=st.integers(1, 5), log10_sigma=st.floats(-4, 3),
       seed=st.integers(0, 2 ** 16))
def test_score_is_gradient_of_log_prob(n, d, log10_sigma, seed):
    sigma = 10.0 ** log10_sigma
    target = Empirical(offset_cloud(n, d, seed, 0.0))
    x = target.sample_noised(7, sigma, gen(seed + 1))
    xr = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(target.log_prob(xr, sigma).sum(), xr)
    score = target.score(x, sigma)
    assert bool(torch.isfinite(grad).all()) and bool(torch.isfinite(score).all())
    # Terms of size (|x| + |y|) / sigma^2 cancel in (D - x) / sigma^2; 1e-12 of that unit.
    unit = (x.norm(dim=-1, keepdim=True) + float(target.points.norm(dim=-1).max())) / sigma ** 2
    torch.testing.assert_close(grad / unit, score / unit, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("offset", [0.0, 1e3])
def test_tiny_sigma_returns_the_nearest_point_exactly(dtype, offset):
    # A jittered lattice (spacing >= 0.8) and queries within 0.05 of point j: the logit gap to any
    # other point is > 0.5 / (2e-8), so every other weight underflows to 0 and D is y_j exactly.
    lattice = torch.cartesian_prod(*(torch.arange(s, dtype=F64) for s in (4, 5, 2)))
    points = offset + lattice + 0.1 * (2 * torch.rand(40, 3, generator=gen(0), dtype=F64) - 1)
    nearest = torch.arange(0, 40, 3)
    x = points[nearest] + 0.05 * torch.rand(len(nearest), 3, generator=gen(1), dtype=F64) - 0.025
    target = Empirical(points)
    assert torch.equal(target.denoise(x.to(dtype), 1e-4), points[nearest].to(dtype))


def test_tiny_sigma_log_prob_has_no_cancellation():
    points = offset_cloud(20, 3, 2, 1e3)
    x = points[:5] + 1e-5 * torch.randn(5, 3, generator=gen(3), dtype=F64)
    # Every other weight underflows, so log p is |x - y_j|^2 / (2 sigma^2) (~ 10 here, computed
    # from the explicit difference) plus constants: a few ulps of 10.
    assert_log_prob_matches_reference(points, x, 1e-4, Empirical(points).log_prob, atol=1e-13)


def test_naive_distance_expansion_fails_the_small_sigma_check():
    # Negative control: |x|^2 - 2 x.y + |y|^2 at |y| ~ 1e3 loses ~1e-10 in the squared distance,
    # i.e. ~1e-2 in log p at sigma = 1e-4, far beyond the tolerance.
    points = offset_cloud(20, 3, 2, 1e3)
    x = points[:5] + 1e-5 * torch.randn(5, 3, generator=gen(3), dtype=F64)
    with pytest.raises(AssertionError):
        assert_log_prob_matches_reference(points, x, 1e-4,
                                          lambda x, s: naive_log_prob(points, x, s), atol=1e-13)


def test_noised_density_integrates_to_one():
    points = torch.tensor([[-1.0], [0.2], [0.25], [3.0]], dtype=F64)
    target, sigma = Empirical(points), 0.3
    density = lambda t: float(target.log_prob(torch.tensor([[t]], dtype=F64), sigma).exp())
    mass, error = integrate.quad(density, -12, 15, points=[-1.0, 0.2, 0.25, 3.0], epsabs=1e-13,
                                 epsrel=1e-13, limit=200)
    # quad's error estimate (asserted small) plus the tails beyond 30 sigma (< 1e-190).
    assert error < 1e-11 and abs(mass - 1) < 1e-11


def test_chunking_gives_the_same_numbers():
    points = offset_cloud(50, 4, 4, 0.0)
    chunked, whole = Empirical(points), Empirical(points)
    chunked.chunk_size = 3
    x = whole.sample_noised(20, 0.4, gen(5))
    for name in ("log_prob", "denoise", "score"):
        # Row blocks of a matmul may be summed in a different order: a few ulps.
        torch.testing.assert_close(getattr(chunked, name)(x, 0.4), getattr(whole, name)(x, 0.4),
                                   rtol=1e-14, atol=1e-14)


def test_chunk_size_bounds_the_block_to_32_megabytes():
    target = Empirical(torch.zeros(100_000, 1, dtype=F64))
    assert target.chunk_size * 100_000 * 8 <= 32 * 2 ** 20 < (target.chunk_size + 1) * 100_000 * 8
    assert Empirical(torch.zeros(5 * 10 ** 6, 1, dtype=F64)).chunk_size == 1


def test_sampling_is_uniform_over_points_and_reproducible():
    points = torch.arange(10, dtype=F64).reshape(5, 2)
    target, n = Empirical(points), 100_000
    draws = target.sample(n, gen(6))
    assert torch.equal(draws, target.sample(n, gen(6)))
    index = (draws[:, 0] / 2).long()
    assert torch.equal(points[index], draws)
    counts = torch.bincount(index, minlength=5).double()
    # Binomial(n, 1/5) counts at 4.5 standard errors: a fresh seed fails with prob. < 4e-5.
    se = math.sqrt(n * 0.2 * 0.8)
    assert float((counts - n / 5).abs().max()) < 4.5 * se


@given(log10_sigma=st.floats(-1, 2), seed=st.integers(0, 2 ** 16))
def test_float32_agrees_with_float64(log10_sigma, seed):
    sigma = 10.0 ** log10_sigma
    target = Empirical(offset_cloud(25, 3, seed, 0.0))
    x = target.sample_noised(9, sigma, gen(seed + 1))
    # float32 u = 6e-8 on terms of size |x| + |y| (denoiser), (|x| + |y|) / sigma^2 (score) and
    # (|x| + |y|)^2 / sigma^2 (log_prob) that cancel, amplified in the weights by logits of size
    # |y|^2 / sigma^2 <= 1e3 (|y| < 4, sigma >= 0.1). A sweep of 400 seeds gave <= 1.1e-6 in
    # those units; 1e-5 is a 9x margin.
    size = 1 + float(target.points.norm(dim=-1).max()) + x.norm(dim=-1)
    for name, unit in (("log_prob", 1 + size ** 2 / sigma ** 2), ("denoise", size[:, None]),
                       ("score", size[:, None] / sigma ** 2)):
        v64, v32 = getattr(target, name)(x, sigma), getattr(target, name)(x.float(), sigma)
        assert v32.dtype == torch.float32
        torch.testing.assert_close(v32.double() / unit, v64 / unit, rtol=0, atol=1e-5)


@pytest.mark.parametrize("points, error, match", [
    (torch.tensor([[0.0, float("nan")]]), ValueError, "points must be finite"),
    (torch.tensor([[0.0, float("inf")]]), ValueError, "points must be finite"),
    (torch.zeros(4), ValueError, r"points must have shape \(N, d\)"),
    (torch.zeros(0, 2), ValueError, r"points must have shape \(N, d\)"),
    (torch.zeros(3, 0), ValueError, r"points must have shape \(N, d\)"),
    ("abc", TypeError, "points"),
    (torch.zeros(2, 2, dtype=torch.complex64), TypeError, "points"),
])
def test_bad_points(points, error, match):
    with pytest.raises(error, match=match):
        Empirical(points)


def test_bad_calls():
    target = Empirical(torch.zeros(3, 2, dtype=F64))
    x = torch.zeros(4, 2, dtype=F64)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        target.log_prob(x, 0.0)
    with pytest.raises(ValueError, match="sigma"):
        target.denoise(x, -1.0)
    with pytest.raises(ValueError, match=r"x must have shape \(n, 2\)"):
        target.score(torch.zeros(4, 3, dtype=F64), 1.0)
    with pytest.raises(TypeError, match="x must be a floating tensor"):
        target.denoise(torch.zeros(4, 2, dtype=torch.int64), 1.0)
    # sigma = 0 in denoise means no noise: D(x, 0) = x.
    assert torch.equal(target.denoise(x + 1, 0.0), x + 1)
