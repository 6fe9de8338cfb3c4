"""Closed-form Gaussian metrics (Bures-W2, KL) and the Fréchet distance of Gaussian fits."""

import math

import numpy as np
import ot
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import labkit
from labkit._intervals import regression_slope_interval
from labkit.metrics.gaussian import (_extrapolated, _fd_samples, bures_wasserstein,
                                     bures_wasserstein_between, frechet_distance,
                                     frechet_to_gaussian, gaussian_kl)

F64 = torch.float64


def random_cov(rng, d, rank=None, jitter=0.0):
    """A random PSD matrix A A^T of the given rank (full by default), plus jitter * I."""
    a = rng.normal(size=(d, rank or d))
    return a @ a.T + jitter * np.eye(d)


def random_gaussian(seed, d, rank=None):
    rng = np.random.default_rng(seed)
    return rng.normal(size=d), random_cov(rng, d, rank)


def w2(m1, c1, m2, c2):
    return bures_wasserstein(m1, c1, m2, c2).value


# ------------------------------------------------------------------ Bures-Wasserstein
def pot_w2(m1, c1, m2, c2, delta=0.0):
    """POT's W2, with C + delta I: its sqrtm takes sqrt of eigenvalues and fails (NaN) on the
    round-off negatives of a singular product A A^T."""
    d = len(m1)
    return float(ot.gaussian.bures_wasserstein_distance(m1, m2, c1 + delta * np.eye(d),
                                                        c2 + delta * np.eye(d)))


def pot_tolerance(c1, c2, w2_value, delta=0.0):
    """How far POT's W2 may be from the exact one.

    POT takes sqrt of the eigenvalues of C1^{1/2} C2 C1^{1/2}: absolute error sqrt(eps |M|) per
    (near-)zero eigenvalue on W2^2, |M| <= |C1| |C2|; divided by 2 W2 for W2. Replacing C by
    C + delta I moves W2 by at most Bures(C, C + delta I) <= sqrt(d delta) per argument.
    """
    d = c1.shape[0]
    eps = np.finfo(np.float64).eps
    norms = np.linalg.norm(c1, 2) * np.linalg.norm(c2, 2)
    on_square = 4 * d * math.sqrt(eps * norms) + 1e-12 * (np.trace(c1) + np.trace(c2))
    return on_square / max(w2_value, 1e-3) + 2 * math.sqrt(d * delta)


@given(seed=st.integers(0, 2**32 - 1), d=st.integers(1, 6), low_rank=st.booleans())
def test_bures_matches_pot(seed, d, low_rank):
    m1, c1 = random_gaussian(seed, d)
    m2, c2 = random_gaussian(seed + 1, d, rank=max(1, d // 2) if low_rank else None)
    delta = 1e-12 if low_rank else 0.0
    got = w2(m1, c1, m2, c2)
    assert abs(got - pot_w2(m1, c1, m2, c2, delta)) <= pot_tolerance(c1, c2, got, delta)


@given(seed=st.integers(0, 2**32 - 1), d=st.integers(1, 5))
def test_bures_is_a_metric(seed, d):
    (m1, c1), (m2, c2), (m3, c3) = (random_gaussian(seed + i, d) for i in range(3))
    scale = math.sqrt(np.trace(c1))
    # Identity: W2(p, p) is only limited by the cancellation in tr(C + C - 2 C) ~ eps tr C, so
    # W2 ~ sqrt(eps tr C) = 1.5e-8 sqrt(tr C); 1e-6 * scale leaves a factor 60.
    assert w2(m1, c1, m1, c1) <= 1e-6 * scale
    assert w2(m1, c1, m2, c2) == pytest.approx(w2(m2, c2, m1, c1), rel=1e-9, abs=1e-9)
    assert w2(m1, c1, m3, c3) <= w2(m1, c1, m2, c2) + w2(m2, c2, m3, c3) + 1e-9
    # Negative control of the identity check: a different Gaussian is far from 0.
    assert w2(m1, c1, m2, c2) > 1e-3


def test_bures_commuting_covariances_closed_form():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    a, b = np.array([4.0, 1.0, 0.25, 0.0]), np.array([1.0, 1.0, 9.0, 2.0])
    m1, m2 = rng.normal(size=4), rng.normal(size=4)
    # Commuting C1 = Q diag(a) Q^T, C2 = Q diag(b) Q^T: W2^2 = |dm|^2 + sum (sqrt a - sqrt b)^2.
    expected = math.sqrt(np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2))
    got = w2(m1, q @ np.diag(a) @ q.T, m2, q @ np.diag(b) @ q.T)
    # Rotating by Q leaves round-off ~eps in the zero eigenvalue of C1; singular values of
    # C1^{1/2} C2^{1/2} keep the trace term accurate to ~eps |C| (sqrt-of-eigenvalue code would
    # be off by ~sqrt(eps) = 1.5e-8 here: 1e-9 relative, which rel=1e-12 rejects).
    assert got == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("m1, s1, m2, s2", [(0.0, 1.0, 3.0, 2.0), (-1.0, 0.5, -1.0, 0.5),
                                             (2.0, 0.0, -1.0, 3.0), (0.0, 1e-3, 0.0, 1e3)])
def test_bures_one_dimensional(m1, s1, m2, s2):
    # In 1-D W2^2 = (m1 - m2)^2 + (s1 - s2)^2 (standard deviations s).
    expected = math.sqrt((m1 - m2) ** 2 + (s1 - s2) ** 2)
    assert w2([m1], s1**2, [m2], s2**2) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_bures_singular_covariances():
    zero = np.zeros(2)
    # Two degenerate Gaussians on perpendicular lines: the cross term vanishes, W2^2 = 1 + 1.
    assert w2(zero, np.diag([1.0, 0.0]), zero, np.diag([0.0, 1.0])) == pytest.approx(math.sqrt(2))
    # Point masses: W2 is the distance of the points.
    assert w2([0.0, 0.0], 0.0, [3.0, 4.0], 0.0) == pytest.approx(5.0, rel=1e-14)
    # A rank-1 product A A^T = a a^T against a rank-2 one: the cross term is
    # tr (C1^{1/2} C2 C1^{1/2})^{1/2} = sqrt(a^T C2 a) / |a| * |a| = sqrt(a^T C2 a).
    rng = np.random.default_rng(1)
    a = rng.normal(size=3)
    c1, c2 = np.outer(a, a), random_cov(rng, 3, rank=2)
    expected = math.sqrt(3 + np.trace(c1) + np.trace(c2) - 2 * math.sqrt(a @ c2 @ a))
    assert w2(np.zeros(3), c1, np.ones(3), c2) == pytest.approx(expected, rel=1e-12)


def test_bures_shapes_and_gaussian_objects():
    p = labkit.Gaussian(torch.tensor([1.0, 2.0]), torch.tensor([[2.0, 0.5], [0.5, 1.0]]))
    q = labkit.Gaussian(torch.zeros(2), torch.tensor([3.0, 0.5]))
    expected = w2(p.mean, p.cov, q.mean, torch.diag(torch.tensor([3.0, 0.5])))
    assert bures_wasserstein_between(p, q).value == pytest.approx(expected, rel=1e-14)
    assert w2([0.0, 0.0], 2.0, [0.0, 0.0], 2 * np.eye(2)) == pytest.approx(0.0, abs=1e-7)
    est = bures_wasserstein_between(p, q)
    assert est.interval == (est.value, est.value) and est.n == 0
    mix = labkit.GaussianMixture(torch.zeros(2, 2), 1.0)
    with pytest.raises(TypeError, match="q must be a labkit.Gaussian"):
        bures_wasserstein_between(p, mix)


@pytest.mark.parametrize("args, exc, match", [
    (([0.0, 0.0], [[1.0, 0.5], [0.0, 1.0]], [0.0, 0.0], 1.0), ValueError, "cov1 must be symmetric"),
    (([0.0, 0.0], 1.0, [0.0, 0.0], [[1.0, 2.0], [2.0, 1.0]]), ValueError,
     "cov2 must be positive semi-definite"),
    (([0.0, 0.0], 1.0, [0.0, 0.0, 0.0], 1.0), ValueError, "mean2 must have dimension 2"),
    (([0.0, 0.0], np.eye(3), [0.0, 0.0], 1.0), ValueError, r"cov1 must have shape \(2, 2\)"),
    (([0.0, float("nan")], 1.0, [0.0, 0.0], 1.0), ValueError, "mean1 must be finite"),
    (([[0.0, 0.0]], 1.0, [0.0, 0.0], 1.0), ValueError, r"mean1 must have shape \(d,\)"),
    ((["a"], 1.0, [0.0], 1.0), TypeError, "mean1 must be"),
])
@pytest.mark.parametrize("fn", [bures_wasserstein, gaussian_kl])
def test_bad_parameters(fn, args, exc, match):
    with pytest.raises(exc, match=match):
        fn(*args)


# ------------------------------------------------------------------ KL divergence
@given(seed=st.integers(0, 2**32 - 1), d=st.integers(1, 5))
def test_kl_matches_torch_distributions(seed, d):
    m1, c1 = random_gaussian(seed, d)
    m2, c2 = random_gaussian(seed + 7, d)
    c1, c2 = c1 + 0.1 * np.eye(d), c2 + 0.1 * np.eye(d)
    mvn = torch.distributions.MultivariateNormal
    expected = float(torch.distributions.kl_divergence(
        mvn(torch.tensor(m1), torch.tensor(c1)), mvn(torch.tensor(m2), torch.tensor(c2))))
    # Two float64 implementations (Cholesky + eigenvalues vs torch's Cholesky): round-off only.
    assert gaussian_kl(m1, c1, m2, c2).value == pytest.approx(expected, rel=1e-8, abs=1e-10)


def test_kl_against_monte_carlo():
    # KL(p || q) = E_p[log p(X) - log q(X)], estimated from exact samples with labkit's log_prob.
    m1, c1 = random_gaussian(3, 3)
    m2, c2 = random_gaussian(4, 3)
    p, q = labkit.Gaussian(m1, c1), labkit.Gaussian(m2, c2 + np.eye(3))
    x = p.sample(40000, generator=torch.Generator().manual_seed(0))
    diff = (p.log_prob(x, 0.0) - q.log_prob(x, 0.0)).numpy()
    mc, stderr = diff.mean(), diff.std(ddof=1) / math.sqrt(diff.size)
    exact = gaussian_kl(m1, c1, m2, c2 + np.eye(3)).value
    # Fixed seed; 4 standard errors is a 6e-5 two-sided false-failure rate.
    assert abs(mc - exact) < 4 * stderr
    # Negative control: the reverse divergence is a different number, many stderr away.
    assert abs(mc - gaussian_kl(m2, c2 + np.eye(3), m1, c1).value) > 10 * stderr


def test_kl_identity_asymmetry_and_singular_cases():
    m, c = random_gaussian(5, 3)
    assert gaussian_kl(m, c, m, c).value == pytest.approx(0.0, abs=1e-12)
    # 1-D asymmetry: KL(N(0,1) || N(0,4)) = (1/4 - 1 + log 4) / 2 and the reverse (4 - 1 - log 4)/2.
    assert gaussian_kl([0.0], 1.0, [0.0], 4.0).value == pytest.approx(
        0.5 * (0.25 - 1 + math.log(4)), rel=1e-14)
    assert gaussian_kl([0.0], 4.0, [0.0], 1.0).value == pytest.approx(
        0.5 * (4 - 1 - math.log(4)), rel=1e-14)
    inf = gaussian_kl([0.0, 0.0], np.diag([1.0, 0.0]), [0.0, 0.0], 1.0)
    assert inf.value == math.inf and "singular" in inf.method
    with pytest.raises(ValueError, match="cov2 must be positive definite"):
        gaussian_kl([0.0, 0.0], 1.0, [0.0, 0.0], np.diag([1.0, 0.0]))


# ------------------------------------------------------------------ Fréchet distance
def test_frechet_plug_in_matches_pot_of_fitted_moments():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 3)), rng.normal(size=(200, 3)) @ random_cov(rng, 3) + 1.0
    expected = float(ot.gaussian.bures_wasserstein_distance(
        x.mean(0), y.mean(0), np.cov(x.T), np.cov(y.T))) ** 2
    fd = frechet_distance(x, y, n_boot=20)
    assert fd.value == pytest.approx(expected, rel=1e-9)
    assert fd.n == 200 and fd.interval[0] < fd.interval[1]
    one = frechet_to_gaussian(x, y.mean(0), np.cov(y.T), n_boot=20)
    assert one.value == pytest.approx(expected, rel=1e-9) and one.n == 300


def test_frechet_bias_shrinks_like_one_over_n():
    # Same distribution on both sides: the population FD is 0 and E[FD_n] ~ c / n.
    g = torch.Generator().manual_seed(0)
    a = torch.tensor(random_cov(np.random.default_rng(2), 3))
    sizes, reps, means = [100, 400, 1600], 150, []
    for n in sizes:
        x = torch.randn(reps, 2, n, 3, generator=g, dtype=F64) @ a
        means.append(np.mean([_fd_samples(x[r, 0], x[r, 1]) for r in range(reps)]))
    slope = regression_slope_interval(np.log(sizes), np.log(means))
    # Each mean has a relative standard error ~ 0.5 / sqrt(150) = 0.04, so the slope's is ~0.02;
    # 0.12 allows 5 of those plus the O(1/n^2) curvature.
    assert abs(slope.value + 1.0) < 0.12, slope


def test_frechet_interval_covers_the_population_value():
    # 100 independent pairs of 200 samples; FD is biased by ~0.1 here (sd 0.065), which a
    # percentile interval would inherit (measured coverage 21%); the basic interval corrects it.
    g = torch.Generator().manual_seed(7)
    scale = torch.tensor([1.5, 1.0, 1.0, 0.5], dtype=F64).sqrt()
    truth = w2(np.zeros(4), np.eye(4), np.zeros(4), np.diag(scale.numpy() ** 2)) ** 2
    x = torch.randn(100, 200, 4, generator=g, dtype=F64)
    y = torch.randn(100, 200, 4, generator=g, dtype=F64) * scale
    fds = [frechet_distance(x[r], y[r], n_boot=40, generator=r) for r in range(100)]
    covered = np.mean([e.contains(truth) for e in fds])
    # Nominal 95%; 0.85 is 4.6 binomial standard errors (0.022) below it, leaving room for the
    # coarse 40-resample quantiles.
    assert covered >= 0.85
    # Negative control: the plug-in values themselves sit well above the truth (the bias) ...
    assert np.mean([e.value for e in fds]) > truth + 0.05
    # ... and the same intervals rarely cover a wrong value (truth + 0.15).
    assert np.mean([e.contains(truth + 0.15) for e in fds]) < 0.5  # measured 0.29


def test_frechet_detects_slightly_wrong_covariance_at_large_n():
    g = labkit.Gaussian(torch.zeros(3), torch.tensor([[1.0, 0.3, 0.0], [0.3, 1.0, 0.0],
                                                      [0.0, 0.0, 0.5]]))
    x = g.sample(20000, generator=torch.Generator().manual_seed(1))
    wrong = g.cov.clone()
    wrong[2, 2] = 0.55  # population FD (sqrt(0.55) - sqrt(0.5))^2 = 1.2e-3
    right_fd = frechet_to_gaussian(x, g.mean, g.cov, n_boot=50)
    wrong_fd = frechet_to_gaussian(x, g.mean, wrong, n_boot=50)
    # The exact target's FD is only the O(1/n) bias (~ tr C / n = 1.2e-4 from the mean term).
    assert right_fd.value < 5e-4
    assert wrong_fd.interval[0] > right_fd.interval[1]
    true_wrong = bures_wasserstein(g.mean, g.cov, g.mean, wrong).value ** 2
    assert true_wrong == pytest.approx((math.sqrt(0.55) - math.sqrt(0.5)) ** 2, rel=1e-9)


def test_frechet_moments_only_mixture_vs_its_moment_gaussian():
    # FD sees two moments: a bimodal mixture and the Gaussian with its mean/covariance differ by
    # the bias only, while their Bures distance to a shifted Gaussian does not vanish.
    mix = labkit.GaussianMixture(torch.tensor([[-2.0, 0.0], [2.0, 0.0]]), 0.25)
    x = mix.sample(20000, generator=torch.Generator().manual_seed(2))
    assert frechet_to_gaussian(x, mix.mean, mix.covariance, n_boot=20).value < 2e-3
    assert frechet_to_gaussian(x, mix.mean + 0.2, mix.covariance, n_boot=20).value > 0.07


def test_frechet_debias_removes_the_one_over_n_bias():
    rng = np.random.default_rng(1)
    g = torch.Generator().manual_seed(3)
    scale = torch.tensor([1.5, 1.0, 1.0, 0.5], dtype=F64).sqrt()
    truth = w2(np.zeros(4), np.eye(4), np.zeros(4), np.diag(scale.numpy() ** 2)) ** 2
    reps, n = 60, 200
    x = torch.randn(reps, n, 4, generator=g, dtype=F64)
    y = torch.randn(reps, n, 4, generator=g, dtype=F64) * scale
    plug = np.array([_fd_samples(x[r], y[r]) for r in range(reps)])
    deb = np.array([_extrapolated(_fd_samples, x[r], y[r], rng) for r in range(reps)])
    se_plug, se_deb = plug.std(ddof=1) / math.sqrt(reps), deb.std(ddof=1) / math.sqrt(reps)
    # The plug-in bias (~0.08 at n = 200 against a truth of 0.136) is > 6 standard errors ...
    assert plug.mean() - truth > 6 * se_plug
    # ... and the extrapolation removes it to within 3 standard errors (0.3% false failures).
    assert abs(deb.mean() - truth) < 3 * se_deb
    est = frechet_distance(x[0], y[0], n_boot=10, debias=True, generator=0)
    assert "1/n = 0" in est.method and est.interval[0] <= est.interval[1]


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"x": np.full((10, 2), np.nan)}, ValueError, "x must be finite"),
    ({"y": np.zeros((10, 3))}, ValueError, "same dimension"),
    ({"x": np.zeros(10)}, ValueError, "reshape 1-D data"),
    ({"x": np.zeros((1, 2))}, ValueError, "at least 2 sample"),
    ({"n_boot": 5}, ValueError, "n_boot must be >= 10"),
    ({"debias": 1}, TypeError, "debias must be a bool"),
    ({"debias": True}, ValueError, "debias=True needs at least"),
])
def test_frechet_bad_input(kwargs, exc, match):
    args = {"x": np.ones((10, 2)), "y": np.zeros((10, 2)), **kwargs}
    with pytest.raises(exc, match=match):
        frechet_distance(args.pop("x"), args.pop("y"), **args)


def test_frechet_to_gaussian_bad_input():
    with pytest.raises(ValueError, match="mean must have dimension 2"):
        frechet_to_gaussian(np.zeros((10, 2)), np.zeros(3), 1.0)
    with pytest.raises(ValueError, match="cov must be positive semi-definite"):
        frechet_to_gaussian(np.zeros((10, 2)), np.zeros(2), -np.eye(2))


@settings(max_examples=10)
@given(seed=st.integers(0, 2**32 - 1))
def test_frechet_is_symmetric_and_zero_on_identical_sets(seed):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(50, 3)), rng.normal(size=(40, 3)) * 2
    assert frechet_distance(x, y, n_boot=10).value == pytest.approx(
        frechet_distance(y, x, n_boot=10).value, rel=1e-9)
    # FD(x, x) is round-off only: W2^2 accuracy ~ eps * tr(2 C) (see bures_wasserstein).
    assert frechet_distance(x, x, n_boot=10).value < 1e-12


def test_gaussian_kl_keeps_tiny_but_positive_eigenvalues():
    """diag(1, 1e-17) is positive definite in float64: the KL to N(0, I) is finite,
    0.5 (tr - d - log det) = 0.5 (1e-17 - 1 + 17 log 10), and the reverse direction is too."""
    tiny = torch.diag(torch.tensor([1.0, 1e-17], dtype=torch.float64))
    eye = torch.eye(2, dtype=torch.float64)
    expected = 0.5 * (1e-17 - 1.0 + 17 * math.log(10.0))
    np.testing.assert_allclose(gaussian_kl([0.0, 0.0], tiny, [0.0, 0.0], eye).value, expected,
                               rtol=1e-12)
    reverse = 0.5 * (1e17 - 1.0 - 17 * math.log(10.0))
    np.testing.assert_allclose(gaussian_kl([0.0, 0.0], eye, [0.0, 0.0], tiny).value, reverse,
                               rtol=1e-9)
    singular = torch.diag(torch.tensor([1.0, 0.0], dtype=torch.float64))
    assert gaussian_kl([0.0, 0.0], singular, [0.0, 0.0], eye).value == math.inf  # control
