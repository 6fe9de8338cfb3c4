"""Tests of ``Curve``: quadrature against closed forms and ``scipy.integrate.quad_vec``, the
stated error bound (true error below it, and not absurdly loose), autograd, Tweedie, Monte
Carlo, arc-length sampling, normalisation, float32, bad input and negative controls."""

import math
import warnings
from functools import lru_cache

import mpmath
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats
from scipy.integrate import IntegrationWarning, quad_vec
from scipy.optimize import minimize_scalar
from scipy.special import ive

from labkit.targets.curve import Curve, QuadratureWarning

EPS64 = torch.finfo(torch.float64).eps
TOL = 1e-8  # Curve's default tol
SIGMAS = np.logspace(-4, 3, 8)


@lru_cache(maxsize=None)
def curve(name: str, measure: str = "arclength") -> Curve:
    factories = {"circle": Curve.circle, "helix": Curve.helix, "roll": Curve.swiss_roll,
                 "small_roll": lambda **kw: Curve.swiss_roll(scale=0.2, **kw)}
    return factories[name](measure=measure)


# ---------------------------------------------------------------------- independent references
def circle_reference(x: np.ndarray, sigma: float, radius: float = 1.0):
    """log p, denoiser of the uniform circle: Bessel closed form with ive (MATH_NOTES).

    scipy's ive returns NaN beyond z ~ 2e9; there the asymptotic series (Abramowitz & Stegun
    9.7.1) to z^-3 is exact to ~1e-30.
    """
    r = np.linalg.norm(x, axis=1)
    z = radius * r / sigma ** 2
    large = z > 1e8
    zl = np.where(large, z, 1.0)
    log_i0e = np.where(large, -0.5 * np.log(2 * np.pi * zl) + np.log1p(1 / (8 * zl)
                                                                       + 9 / (128 * zl ** 2)),
                       np.log(ive(0, np.where(large, 0.0, z))))
    i1_over_i0 = np.where(large, 1 - 1 / (2 * zl) - 1 / (8 * zl ** 2) - 1 / (8 * zl ** 3),
                          ive(1, np.where(large, 0.0, z))
                          / ive(0, np.where(large, 0.0, z)))
    # -(r^2 + R^2)/(2 sigma^2) + z written as -(r - R)^2/(2 sigma^2): no cancellation.
    log_p = -np.log(2 * np.pi * sigma ** 2) - (r - radius) ** 2 / (2 * sigma ** 2) + log_i0e
    ratio = np.divide(i1_over_i0, r, out=np.zeros_like(r), where=r > 0)
    return log_p, radius * ratio[:, None] * x


def helix_np(t):
    return np.stack([np.cos(t), np.sin(t), t / (2 * np.pi)], -1)


def roll_np(t):
    return np.stack([t * np.cos(t), t * np.sin(t)], -1)


def roll_arclength(t):
    return 0.5 * (t * np.sqrt(1 + t * t) + np.arcsinh(t))


NUMPY_CURVES = {  # gamma, |gamma'|, length, written independently of labkit
    "helix": (helix_np, lambda t: math.sqrt(1 + (2 * np.pi) ** -2),
              3 * math.sqrt((2 * np.pi) ** 2 + 1)),
    "roll": (roll_np, lambda t: math.sqrt(1 + t * t),
             roll_arclength(4.5 * np.pi) - roll_arclength(1.5 * np.pi)),
}


def quad_reference(name: str, x: np.ndarray, sigma: float, measure: str = "arclength"):
    """log p, denoiser and their reference error by adaptive Gauss-Kronrod (quad_vec).

    Breakpoints at every local minimiser of |x - gamma|^2 and at nested distances
    sigma * {1e-3, ..., 1e2} / |gamma'| around it, so that no bump falls between nodes.
    """
    gamma, speed, length = NUMPY_CURVES[name]
    a, b = curve(name).t_range
    grid = np.linspace(a, b, 20001)
    f = ((gamma(grid) - x) ** 2).sum(-1)
    minima = np.nonzero((f[1:-1] <= f[:-2]) & (f[1:-1] <= f[2:]))[0] + 1
    h = grid[1] - grid[0]

    def dist2(t):
        return float(((gamma(np.array([t]))[0] - x) ** 2).sum())

    centres = [a, b] + [minimize_scalar(dist2, bounds=(grid[i] - h, grid[i] + h),
                                        method="bounded", options={"xatol": 1e-15}).x
                        for i in minima]
    f_min = min(dist2(t) for t in centres)
    points = {q for c in centres for w in 10.0 ** np.arange(-3, 3) for sign in (-1, 1)
              if a < (q := c + sign * w * sigma / speed(c)) < b} | set(centres[2:])
    scale = math.sqrt(f_min) + sigma
    weight_of = speed if measure == "arclength" else (lambda t: 1.0)

    def integrand(t):
        g = gamma(np.array([t]))[0]
        w = math.exp(-(((g - x) ** 2).sum() - f_min) / (2 * sigma ** 2)) * weight_of(t)
        return np.concatenate([[w], w * (g - x) / scale])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IntegrationWarning)
        # At small sigma the integrand carries rounding ~eps |x - gamma|^2 / sigma^2 that no
        # rule removes; quad_vec then stops at `limit` and `err` reports that noise.
        value, err = quad_vec(integrand, a, b, points=sorted(points), epsabs=0, epsrel=1e-13,
                              norm="max", limit=300)
    z = value[0]
    log_total = math.log(length if measure == "arclength" else b - a)
    log_p = math.log(z) - f_min / (2 * sigma ** 2) - log_total \
        - 0.5 * len(x) * math.log(2 * math.pi * sigma ** 2)
    return log_p, x + scale * value[1:] / z, err / z


def assert_within_bound(value, reference, bound, what):
    """|value - reference| <= bound elementwise (Euclidean over the last axis for vectors)."""
    value, reference, bound = (np.asarray(v, dtype=np.float64) for v in (value, reference, bound))
    err = np.abs(value - reference) if value.ndim == 1 else np.linalg.norm(value - reference,
                                                                             axis=-1)
    bad = err > bound
    assert not bad.any(), (f"{what}: {bad.sum()} error(s) above the bound, worst "
                           f"{err[bad].max():.3e} vs bound {bound[bad][np.argmax(err[bad])]:.3e}")
    return err


def assert_bound_not_loose(bound, err, target, what):
    """The stated bound is useful: below the accuracy target, or within 1e4 of the true error
    (``err`` includes the reference's own rounding, so an exact match is not 'infinitely'
    loose)."""
    bound, err, target = (np.asarray(v, dtype=np.float64) for v in (bound, err, target))
    loose = (bound > target) & (bound > 1e4 * err)
    assert not loose.any(), f"{what}: bound {bound[loose].max():.3e} is loose"


def circle_points() -> torch.Tensor:
    """Points near the circle, near its centre (the focal point), far away, and the centre."""
    g = torch.Generator().manual_seed(0)

    def uniform(n, low, high):
        return low + (high - low) * torch.rand(n, generator=g, dtype=torch.float64)

    # Few near the centre: there every point of the circle is nearly equidistant and the
    # windows cannot shrink, so these points need the most panels (the slow case).
    radius = torch.cat([uniform(16, 0.995, 1.005), uniform(6, 0, 1e-3), uniform(16, 0, 3),
                        uniform(16, 5, 25)])
    angle = uniform(len(radius), 0, 2 * math.pi)
    x = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], 1)
    return torch.cat([x, torch.zeros(1, 2, dtype=torch.float64)])


# ---------------------------------------------------------------------- accuracy and bounds
def box_points(dim: int, box: float):
    return st.integers(1, 3).flatmap(lambda n: arrays(
        np.float64, (n, dim), elements=st.floats(-box, box, allow_subnormal=False)))


@pytest.mark.parametrize("sigma", SIGMAS)
def test_circle_matches_bessel_closed_form_within_stated_bound(sigma):
    circle, x = curve("circle"), circle_points()
    err = circle.quadrature_error(x, sigma)
    ref_log_p, ref_d = circle_reference(x.numpy(), sigma)
    # The closed form itself is rounded: 4 eps |log p|, 4 eps |D|. (The score is checked
    # against an exact reference in the next test.)
    bound = {k: getattr(err, k).numpy() for k in ("log_prob", "denoise")}
    true_log_p = assert_within_bound(circle.log_prob(x, sigma), ref_log_p,
                                     bound["log_prob"] + 4 * EPS64 * np.abs(ref_log_p),
                                     "log_prob")
    true_d = assert_within_bound(circle.denoise(x, sigma), ref_d,
                                 bound["denoise"] + 4 * EPS64, "denoise")
    distance = np.linalg.norm(x.numpy() - ref_d, axis=1)
    assert_bound_not_loose(err.log_prob, true_log_p + 4 * EPS64 * np.abs(ref_log_p), TOL,
                           "log_prob")
    assert_bound_not_loose(err.denoise, true_d + 4 * EPS64,
                           TOL * np.maximum(min(sigma, circle.length), distance), "denoise")


def circle_score_error(x: torch.Tensor, score: torch.Tensor, sigma: float,
                       radius: float = 1.0) -> np.ndarray:
    """|score - exact score| of the uniform circle, computed in 40-digit arithmetic.

    Exact score ``x (R I1(z) / (r I0(z)) - 1) / sigma^2`` with ``z = R r / sigma^2``; the inputs
    are float64 numbers taken exactly, so the result is the true error to ~1e-30 relative (the
    returned float64 rounds it by eps/2, far below any bound)."""
    errors = []
    with mpmath.workdps(40):
        s2, big_r = mpmath.mpf(sigma) ** 2, mpmath.mpf(radius)
        for xi, si in zip(x.double().tolist(), score.double().tolist()):
            xi = [mpmath.mpf(v) for v in xi]
            r = mpmath.sqrt(sum(v * v for v in xi))
            if r == 0:
                factor = mpmath.mpf(0)  # the score is 0 at the centre
            else:
                z = big_r * r / s2
                factor = (big_r * mpmath.besseli(1, z) / (r * mpmath.besseli(0, z)) - 1) / s2
            errors.append(float(mpmath.sqrt(sum((mpmath.mpf(sv) - factor * v) ** 2
                                                for sv, v in zip(si, xi)))))
    return np.array(errors)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sigma", SIGMAS)
def test_circle_score_within_stated_bound(sigma, dtype):
    # The library's bound alone, against an exact reference: quadrature_error(...).score must
    # cover both the denoiser's error and the rounding of (D - x) / sigma^2 (which dominates
    # at large sigma: with the bound err_D / sigma^2 alone, float32 at sigma = 1e3 is off 100x).
    # sigma is rounded to dtype first so that the reference sees the sigma the library uses.
    circle = curve("circle")
    x, sigma = circle_points().to(dtype), float(torch.tensor(sigma, dtype=dtype))
    score, quadrature_error = circle.score(x, sigma), circle.quadrature_error(x, sigma)
    bound = quadrature_error.score
    assert score.dtype == bound.dtype == dtype
    err = circle_score_error(x, score, sigma)
    bound = bound.double().numpy()
    bad = err > bound
    assert not bad.any(), (f"score: {bad.sum()} error(s) above the bound, worst ratio "
                           f"{(err / bound).max():.3g}")
    # Not loose: below the accuracy target (relative error tol of the score, tol raised to
    # 100 eps) or within 1e4 of the true error. In float32 at small sigma the denoiser's own
    # worst-case term min(delta^2, 1) * extent (see Curve._errors) is far above the true error,
    # so there only the score's rounding term, bound - err_D / sigma^2, is held to this.
    tol = max(TOL, 100 * torch.finfo(dtype).eps)
    distance = (x.double() - circle.denoise(x, sigma).double()).norm(dim=1).numpy()
    target = tol * np.maximum(min(sigma, circle.length), distance) / sigma ** 2
    rounding = bound - (quadrature_error.denoise.double() / sigma ** 2).numpy()
    assert_bound_not_loose(bound if dtype == torch.float64 else rounding, err, target, "score")


@given(box_points(2, 30.0), st.floats(-4, 3))
def test_circle_error_bound_holds_anywhere(x, log_sigma):
    circle, x, sigma = curve("circle"), torch.tensor(x), 10.0 ** log_sigma
    err = circle.quadrature_error(x, sigma)
    ref_log_p, ref_d = circle_reference(x.numpy(), sigma)
    assert_within_bound(circle.log_prob(x, sigma), ref_log_p,
                        err.log_prob.numpy() + 4 * EPS64 * np.abs(ref_log_p), "log_prob")
    assert_within_bound(circle.denoise(x, sigma), ref_d, err.denoise.numpy() + 4 * EPS64,
                        "denoise")


@pytest.mark.parametrize("name", ["helix", "roll"])
@pytest.mark.parametrize("sigma", [1e-4, 1e-2, 1.0, 1e2])
def test_helix_and_swiss_roll_match_quad_reference(name, sigma):
    target = curve(name)
    x = target.sample_noised(2, 0.3, torch.Generator().manual_seed(1))
    x = torch.cat([x, torch.full((1, target.dim), 7.0, dtype=torch.float64)])
    err = target.quadrature_error(x, sigma)
    refs = [quad_reference(name, xi, sigma) for xi in x.numpy()]
    ref_log_p, ref_d, ref_err = (np.array([r[i] for r in refs]) for i in range(3))
    scale = np.linalg.norm(x.numpy() - ref_d, axis=1) + sigma
    # Reference error: quad_vec's estimate (relative in Z, times the scale in D) + rounding
    # of the sums, 8 eps |log p| and 8 eps (|x| + |D|).
    ref_log_round = ref_err + 8 * EPS64 * (1 + np.abs(ref_log_p))
    ref_d_round = ref_err * scale + 8 * EPS64 * (np.abs(x.numpy()) + np.abs(ref_d)).sum(1)
    true_log_p = assert_within_bound(target.log_prob(x, sigma), ref_log_p,
                                     err.log_prob.numpy() + ref_log_round, "log_prob")
    true_d = assert_within_bound(target.denoise(x, sigma), ref_d,
                                 err.denoise.numpy() + ref_d_round, "denoise")
    assert_bound_not_loose(err.log_prob, true_log_p + ref_log_round, TOL, "log_prob")
    assert_bound_not_loose(err.denoise, true_d + ref_d_round, TOL * scale, "denoise")


def test_negative_control_too_few_panels_is_detected():
    # One panel per window (8 nodes) cannot resolve sigma = 0.03 over the whole circle; the
    # same closed-form check must fail, and the estimate itself must flag it.
    crude = Curve.circle(panels=1, max_panels=2)
    x = torch.tensor([[0.3, 0.1], [0.0, 0.2]], dtype=torch.float64)
    sigma = 0.3
    with pytest.warns(QuadratureWarning, match="max_panels"):
        log_p, err = crude.log_prob(x, sigma), crude.quadrature_error(x, sigma)
    ref_log_p, _ = circle_reference(x.numpy(), sigma)
    with pytest.raises(AssertionError, match="above the bound"):
        assert_within_bound(log_p, ref_log_p, np.full(2, TOL), "log_prob")
    assert bool((err.log_prob > TOL).all())


def test_negative_control_uniform_in_t_is_detected_on_swiss_roll():
    # Uniform-in-t weights on the roll (speed varies 3x) against the arc-length reference.
    wrong = curve("roll", "parameter")
    x = curve("roll").sample_noised(2, 0.3, torch.Generator().manual_seed(2))
    ref = [quad_reference("roll", xi, 1.0) for xi in x.numpy()]
    err = wrong.quadrature_error(x, 1.0)
    with pytest.raises(AssertionError, match="above the bound"):
        assert_within_bound(wrong.log_prob(x, 1.0), [r[0] for r in ref], err.log_prob, "lp")
    # ...while the same measure is right against its own reference.
    own = [quad_reference("roll", xi, 1.0, measure="parameter")[0] for xi in x.numpy()]
    assert_within_bound(wrong.log_prob(x, 1.0), own, err.log_prob.numpy() + 1e-12, "log_prob")


# ---------------------------------------------------------------------- identities (hypothesis)
@st.composite
def cases(draw, box: float = 30.0):
    name = draw(st.sampled_from(["circle", "helix", "roll"]))
    x = draw(box_points(curve(name).dim, box))
    sigma = 10.0 ** draw(st.floats(-4, 3))
    return curve(name), torch.tensor(x), sigma


def autograd_score(target, x, sigma):
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(target.log_prob(x, sigma).sum(), x)
    return grad


def same_rule_tolerance(target, x, sigma):
    """Score and autograd use the same nodes and differ only by rounding: sums of terms
    (gamma - x) / sigma^2, 1e3 eps (|x| + R) / sigma^2 (1e3 covers ~1e4 nodes); and the
    backward of logsumexp weighs by exp(l_i - log Z), off by eps |log Z| in total mass, which
    scales the whole score: 8 eps (1 + |log p|) |score|."""
    log_p, score = target.log_prob(x, sigma), target.score(x, sigma)
    return 1e3 * EPS64 * (x.norm(dim=1) + target._radius) / sigma ** 2 \
        + 8 * EPS64 * (1 + log_p.abs()) * score.norm(dim=1)


@given(cases())
def test_score_is_autograd_of_log_prob(case):
    target, x, sigma = case
    err = (target.score(x, sigma) - autograd_score(target, x, sigma)).norm(dim=1)
    assert bool((err <= same_rule_tolerance(target, x, sigma)).all()), err


def test_negative_control_autograd_check_detects_wrong_sigma():
    target = curve("helix")
    x = target.sample_noised(3, 0.1, torch.Generator().manual_seed(3))
    err = (target.score(x, 0.1 * (1 + 1e-6)) - autograd_score(target, x, 0.1)).norm(dim=1)
    assert bool((err > same_rule_tolerance(target, x, 0.1)).any())


@given(cases())
def test_denoiser_is_tweedie(case):
    target, x, sigma = case
    tweedie = x + sigma ** 2 * autograd_score(target, x, sigma)
    err = (target.denoise(x, sigma) - tweedie).norm(dim=1)
    assert bool((err <= sigma ** 2 * same_rule_tolerance(target, x, sigma)).all()), err


@given(cases(box=100.0), st.sampled_from([torch.float32, torch.float64]))
def test_finite_with_finite_gradients_everywhere(case, dtype):
    target, x, sigma = case
    x = x.to(dtype).requires_grad_(True)
    log_p, score = target.log_prob(x, sigma), target.score(x, sigma)
    (grad,) = torch.autograd.grad(log_p.sum(), x, retain_graph=True)
    (hess_row,) = torch.autograd.grad(score.sum(), x)
    for value in (log_p, score, grad, hess_row):
        assert bool(torch.isfinite(value).all())


# ---------------------------------------------------------------------- statistics
def test_denoiser_matches_monte_carlo_posterior_mean():
    # Self-normalised importance sampling from the clean curve; |D - mean| within 4 standard
    # errors (delta method) per coordinate: false-failure rate ~ 6e-5 per coordinate.
    roll, sigma, n = curve("small_roll"), 0.3, 100_000
    g = torch.Generator().manual_seed(4)
    x = roll.sample_noised(3, sigma, g)
    x0 = roll.sample(n, g)
    log_w = -((x[:, None, :] - x0[None]) ** 2).sum(-1) / (2 * sigma ** 2)
    w = torch.softmax(log_w, 1)                                   # (3, n)
    mean = w @ x0
    stderr = torch.sqrt(torch.einsum("mn,mnd->md", w ** 2, (x0[None] - mean[:, None]) ** 2))
    assert bool(((roll.denoise(x, sigma) - mean).abs() <= 4 * stderr).all())
    # Negative control: the uniform-in-t roll's denoiser is rejected by the same check.
    wrong = curve("small_roll", "parameter").denoise(x, sigma)
    assert bool(((wrong - mean).abs() > 4 * stderr).any())


def test_samples_are_uniform_in_arc_length():
    # KS test at level 1e-3 (the false-failure rate of a correct sampler); fixed seeds.
    g = torch.Generator().manual_seed(5)
    helix = curve("helix")
    t = 2 * math.pi * helix.sample(20_000, g)[:, 2].numpy()           # z = t / (2 pi)
    assert stats.kstest(t / (6 * math.pi), "uniform").pvalue > 1e-3
    roll_length = NUMPY_CURVES["roll"][2]

    def roll_s(samples):  # |x| = t on the roll; arc length in closed form
        t = np.linalg.norm(samples.numpy(), axis=1)
        return (roll_arclength(t) - roll_arclength(1.5 * math.pi)) / roll_length

    assert stats.kstest(roll_s(curve("roll").sample(20_000, g)), "uniform").pvalue > 1e-3
    # Negative control: uniform-in-t samples of the roll fail the same test decisively.
    wrong = curve("roll", "parameter").sample(20_000, g)
    assert stats.kstest(roll_s(wrong), "uniform").pvalue < 1e-10


def test_sampling_is_reproducible_and_follows_dtype():
    helix = curve("helix")
    a = helix.sample(5, torch.Generator().manual_seed(6))
    b = helix.sample(5, torch.Generator().manual_seed(6), dtype=torch.float32)
    torch.testing.assert_close(a.float(), b, rtol=0, atol=0)
    assert b.dtype == torch.float32


def test_swiss_roll_noised_density_integrates_to_one():
    # Trapezoid rule on a 2-D grid: spectrally accurate for the Gaussian-smoothed density
    # (error ~ exp(-2 pi^2 sigma^2 / h^2) ~ 1e-137), box 8 sigma beyond the roll (mass
    # outside < 1e-15); each log p carries <= tol relative error, so |integral - 1| <= 2 tol.
    roll, sigma, h = curve("small_roll"), 0.5, 0.125
    axis = torch.arange(-7.0, 7.0 + h / 2, h, dtype=torch.float64)
    xx, yy = torch.meshgrid(axis, axis, indexing="ij")
    x = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    total = roll.log_prob(x, sigma).exp().sum() * h ** 2
    torch.testing.assert_close(total, torch.tensor(1.0, dtype=torch.float64), rtol=0,
                               atol=2 * TOL)


# ---------------------------------------------------------------------- float32
@pytest.mark.parametrize("name", ["circle", "helix", "roll"])
@pytest.mark.parametrize("sigma", [1e-4, 1e-2, 1.0, 1e3])
def test_float32_agrees_with_float64(name, sigma):
    # Stated tolerance: the sum of the two dtypes' own error bounds, which in float32 is
    # dominated by rounding, ~eps32 (|x| + R + T v_max) (1 + |x - D| / sigma) for D.
    target = curve(name)
    x = target.sample_noised(16, 0.5, torch.Generator().manual_seed(7))
    x32 = x.float()
    err64, err32 = target.quadrature_error(x, sigma), target.quadrature_error(x32, sigma)
    assert_within_bound(target.log_prob(x32, sigma).double(), target.log_prob(x, sigma),
                        err32.log_prob.double() + err64.log_prob, "log_prob")
    assert_within_bound(target.denoise(x32, sigma).double(), target.denoise(x, sigma),
                        err32.denoise.double() + err64.denoise, "denoise")
    eps32 = torch.finfo(torch.float32).eps
    conditioning = eps32 * (x.norm(dim=1) + target._radius + target._node_scale) \
        * (1 + (x - target.denoise(x, sigma)).norm(dim=1) / sigma)
    assert bool((err32.denoise.double() <= 50 * conditioning + 1e-5 * sigma).all())


# ---------------------------------------------------------------------- geometry and fallbacks
def test_arclength_matches_closed_form():
    # Table + in-cell Gauss-Legendre: exact to rounding (40 eps of the length).
    roll = curve("roll")
    t = torch.linspace(1.5 * math.pi, 4.5 * math.pi, 7, dtype=torch.float64)
    expected = roll_arclength(t.numpy()) - roll_arclength(1.5 * math.pi)
    np.testing.assert_allclose(roll.arclength(t).numpy(), expected, rtol=0,
                               atol=40 * EPS64 * roll.length)
    with pytest.raises(ValueError, match="t must"):
        roll.arclength(torch.tensor([0.0], dtype=torch.float64))


class _CosWithoutForwardMode(torch.autograd.Function):
    """cos with a backward but no jvp: forces Curve's reverse-mode derivative path."""

    @staticmethod
    def forward(ctx, t):
        ctx.save_for_backward(t)
        return torch.cos(t)

    @staticmethod
    def backward(ctx, grad):
        (t,) = ctx.saved_tensors
        return -grad * torch.sin(t)


def test_reverse_mode_fallback_matches_forward_mode():
    def gamma(t):
        return torch.stack([_CosWithoutForwardMode.apply(t), torch.sin(t)], -1)

    fallback = Curve(gamma, (0.0, 2 * math.pi), closed=True)
    assert not fallback._forward_ad
    x = curve("circle").sample_noised(8, 0.2, torch.Generator().manual_seed(8))
    # Same nodes and rule, derivatives equal to rounding: 1e-12 relative.
    torch.testing.assert_close(fallback.log_prob(x, 0.2), curve("circle").log_prob(x, 0.2),
                               rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fallback.score(x, 0.2), curve("circle").score(x, 0.2),
                               rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------- input validation
def circle_gamma(t):
    return torch.stack([torch.cos(t), torch.sin(t)], -1)


@pytest.mark.parametrize("t_range, match", [((1.0, 1.0), "a < b"), ((2.0, 1.0), "a < b"),
                                             ((0.0, math.inf), "t_range"),
                                             ((0.0, 1.0, 2.0), "t_range"),
                                             ("ab", "t_range")])
def test_bad_t_range(t_range, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Curve(circle_gamma, t_range)


@pytest.mark.parametrize("gamma, error", [
    (3.0, TypeError),                                           # not callable
    (lambda t: t, ValueError),                                  # shape (n,), not (n, d)
    (lambda t: t.numpy()[:, None], TypeError),                  # not a tensor
    (lambda t: torch.stack([t, t], -1)[:2], ValueError),        # wrong row count
    (lambda t: 1 / 0, TypeError),                               # raises
    (lambda t: torch.stack([t, t.sum().expand_as(t)], -1), ValueError),  # not row-wise
    (lambda t: torch.stack([t, t ** 0.0], -1) * 0, ValueError),  # not regular (speed 0)
    (lambda t: torch.stack([t, t], -1).float(), TypeError),     # ignores t's dtype
])
def test_bad_gamma_names_gamma(gamma, error):
    with pytest.raises(error, match="gamma"):
        Curve(gamma, (0.0, 1.0))


@pytest.mark.parametrize("options, match", [({"tol": 0.0}, "tol"), ({"tol": -1e-3}, "tol"),
                                             ({"measure": "area"}, "measure"),
                                             ({"dim": 3}, "dim"), ({"closed": True}, "closed"),
                                             ({"panels": 0}, "panels"),
                                             ({"max_panels": 4, "panels": 4}, "max_panels")])
def test_bad_options(options, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Curve(circle_gamma, (0.0, 3.0), **options)


@pytest.mark.parametrize("factory, options, match", [
    (Curve.helix, {"radius": -1.0}, "radius"), (Curve.helix, {"turns": [1.0, 2.0]}, "turns"),
    (Curve.helix, {"ambient_dim": 2}, "ambient_dim"), (Curve.swiss_roll, {"start": -1.0}, "start"),
    (Curve.circle, {"radius": True}, "radius"), (Curve.swiss_roll, {"scale": math.nan}, "scale"),
])
def test_bad_factory_arguments(factory, options, match):
    with pytest.raises((ValueError, TypeError), match=match):
        factory(**options)


def test_singular_at_sigma_zero_and_bad_points():
    circle = curve("circle")
    x = torch.zeros(2, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="sigma"):
        circle.log_prob(x, 0.0)
    with pytest.raises(ValueError, match="sigma"):
        circle.quadrature_error(x, 0.0)
    with pytest.raises(ValueError, match="x"):
        circle.score(torch.zeros(2, 3, dtype=torch.float64), 1.0)
    torch.testing.assert_close(circle.denoise(x, 0.0), x)   # no noise: D(x, 0) = x
    assert not circle.has_density
