"""Probability-flow ODE likelihoods against exact noised log-densities."""

import math

import pytest
import torch

import labkit
from labkit.likelihood.flow import flow_log_prob, gaussian_prior_log_prob

F64 = torch.float64
SIGMA_MIN, SIGMA_MAX = 0.01, 10.0


def _mixture() -> labkit.GaussianMixture:
    g = torch.Generator().manual_seed(3)
    a = torch.randn(3, 2, 2, generator=g, dtype=F64)
    covs = 0.1 * a @ a.transpose(1, 2) + 0.05 * torch.eye(2, dtype=F64)
    return labkit.GaussianMixture(1.5 * torch.randn(3, 2, generator=g, dtype=F64), covs,
                                  weights=[0.5, 0.3, 0.2])


def _gaussian() -> labkit.Gaussian:
    return labkit.Gaussian(torch.tensor([0.5, -1.0], dtype=F64),
                           torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=F64))


TARGETS = {"mixture": _mixture, "gaussian": _gaussian}


def _exact_prior(target, sigma_max=SIGMA_MAX):
    return lambda z: target.log_prob(z, sigma_max)


def _points(target, n=16, seed=1):
    return target.sample_noised(n, SIGMA_MIN, torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module", params=list(TARGETS))
def runs(request):
    """The exact-divergence flow with the exact prior at 16, 32 and 64 RK4 steps."""
    target = TARGETS[request.param]()
    x = _points(target)
    out = {n: flow_log_prob(target, x, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, n_steps=n,
                            prior_log_prob=_exact_prior(target)) for n in (16, 32, 64)}
    return target, x, out


def _richardson_bound_holds(err, estimate):
    """Pointwise ``err <= 2 * estimate`` (round-off floor 1e-10 on values of order 10)."""
    return bool((err <= 2 * estimate + 1e-10).all())


def test_exact_flow_recovers_the_target_log_density(runs):
    """With the exact denoiser and prior the only error is RK4's, and the Richardson estimate
    ``|l_64 - l_32| / 15`` bounds it within a factor 2, a priori: with signed errors e_N and
    r = e_32 / e_64, err / estimate = 15 / |1 - r|, which is <= 2 iff r >= 8.5 (an observed
    order >= log2 8.5 = 3.09). In RK4's asymptotic regime r = 16 (1 + O(h)), so the bound
    holds unless the O(h) correction at h = log(1000) / 32 exceeds 47%; the order test below
    checks that regime. Negative control: the same check flags Heun's estimate computed as if
    it were fourth order (r ~ 4 gives err / estimate ~ 5)."""
    target, x, out = runs
    exact = target.log_prob(x, SIGMA_MIN)
    res = out[64]
    err = (res.log_prob - exact).abs()
    assert _richardson_bound_holds(err, res.error_estimate), err / res.error_estimate
    assert res.nfe == 4 * 64 + 4 * 32
    torch.testing.assert_close(res.log_prob, res.prior_log_prob + res.delta_log_prob)
    heun = flow_log_prob(target, x, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, n_steps=64,
                         method="heun", prior_log_prob=_exact_prior(target))
    heun_err = (heun.log_prob - exact).abs()
    assert _richardson_bound_holds(heun_err, heun.error_estimate)  # /3: its true order 2
    assert not _richardson_bound_holds(heun_err, heun.error_estimate * 3 / 15)


def test_exact_flow_converges_at_fourth_order(runs):
    """Halving the step divides the max error by ~2^4: measured log2 ratios 3.79 and 3.89
    (mixture), 3.82 and 3.91 (Gaussian); a second-order defect would give ~2."""
    target, x, out = runs
    exact = target.log_prob(x, SIGMA_MIN)
    errs = [float((out[n].log_prob - exact).abs().max()) for n in (16, 32, 64)]
    for coarse, fine in zip(errs, errs[1:]):
        assert 3.5 < math.log2(coarse / fine) < 4.5, errs


def test_default_gaussian_prior_bias_is_small_and_documented():
    """N(0, sigma_max^2 I) in place of p_sigma_max errs by about z.m / sigma_max^2 at the
    endpoint z (|z| ~ sigma_max, data mean m): at sigma_max = 80 the measured worst point is off
    by 0.015 and the mean over points by 1.2e-4 (mixture of scale ~3), while at sigma_max = 10
    it is 0.15, far beyond the RK4 error; the exact prior removes it."""
    target = _mixture()
    x = _points(target)
    exact = target.log_prob(x, SIGMA_MIN)
    errs = {}
    for smax in (10.0, 80.0):
        res = flow_log_prob(target, x, sigma_min=SIGMA_MIN, sigma_max=smax, n_steps=32,
                            error_estimate=False)
        errs[smax] = (res.log_prob - exact).abs()
        z = res.x_final
        gap = target.log_prob(z, smax) - gaussian_prior_log_prob(z, smax)
        # the whole difference is the boundary term (RK4 error < 3e-4 at 32 steps)
        torch.testing.assert_close(exact - res.log_prob, gap, rtol=0, atol=3e-3)
    assert float(errs[80.0].max()) < 0.05 < float(errs[10.0].max())


@pytest.mark.parametrize("wrong", ["shifted_means", "wrong_sigma"])
def test_negative_control_wrong_denoiser_is_far_off(wrong):
    """A wrong denoiser (means shifted by 0.3, or the right one at 1.1 sigma) must miss the exact
    log-density by far more than RK4's error at 32 steps (on these 16 points: max error 2.6e-4
    nats, max Richardson estimate 2.2e-4; the test asserts a median miss > 1e-2; measured median
    misses 0.80 and 0.12)."""
    target = _mixture()
    x = _points(target)
    if wrong == "shifted_means":
        denoiser = labkit.GaussianMixture(target.means + 0.3, target.covs, target.weights)
    else:
        def denoiser(y, sigma):
            return target(y, 1.1 * sigma)
    res = flow_log_prob(denoiser, x, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, n_steps=32,
                        prior_log_prob=_exact_prior(target), error_estimate=False)
    miss = (res.log_prob - target.log_prob(x, SIGMA_MIN)).abs()
    assert float(miss.median()) > 100 * 1e-4


def test_float32_agrees_with_float64():
    """float32 follows the input and matches float64 at the same steps to 1e-4 (measured 3e-6
    on log-densities of size ~7; ~25 float32 eps accumulated over 192 stages)."""
    target = _mixture()
    x = _points(target)
    kw = dict(sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, n_steps=32,
              prior_log_prob=_exact_prior(target), error_estimate=False)
    r32 = flow_log_prob(target, x.float(), **kw)
    r64 = flow_log_prob(target, x, **kw)
    assert r32.log_prob.dtype == r32.x_final.dtype == torch.float32
    torch.testing.assert_close(r32.log_prob.double(), r64.log_prob, rtol=0, atol=1e-4)


@pytest.mark.parametrize("resample", [False, True])
def test_hutchinson_flow_is_unbiased(resample):
    """4 points, each repeated 256 times with its own Rademacher probe: the mean over the copies
    matches the exact-divergence flow within 4 standard errors (per point, ~6e-5 false-failure
    rate), for probes fixed per trajectory (FFJORD) and redrawn per step."""
    target = _mixture()
    x = _points(target, n=4)
    kw = dict(sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, n_steps=16,
              prior_log_prob=_exact_prior(target), error_estimate=False)
    exact = flow_log_prob(target, x, **kw).log_prob
    res = flow_log_prob(target, x.repeat_interleave(256, 0), divergence="hutchinson",
                        resample_probes=resample, generator=torch.Generator().manual_seed(2), **kw)
    assert res.variance is None
    lp = res.log_prob.view(4, 256)
    z = (lp.mean(dim=1) - exact) / (lp.var(dim=1) / 256).sqrt()
    assert bool((z.abs() < 4).all()), z


def test_hutchinson_flow_reports_variance_and_matches_exact_in_the_mean():
    target = _gaussian()
    x = _points(target, n=3)
    kw = dict(sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, n_steps=8,
              prior_log_prob=_exact_prior(target))
    exact = flow_log_prob(target, x, **kw)
    res = flow_log_prob(target, x, divergence="hutchinson", n_probes=64, probe="gaussian",
                        generator=torch.Generator().manual_seed(4), **kw)
    assert res.variance.shape == (3,) and bool((res.variance > 0).all())
    # same trajectory x(sigma): the probes only enter the log-density increment
    torch.testing.assert_close(res.x_final, exact.x_final)
    z = (res.log_prob - exact.log_prob) / res.variance.sqrt()
    assert bool((z.abs() < 4).all()), z


def test_bad_inputs_raise_clear_errors():
    target = _gaussian()
    x = _points(target, n=3)
    kw = dict(sigma_min=0.1, sigma_max=1.0, n_steps=2)
    with pytest.raises(ValueError, match="0 < sigma_min < sigma_max"):
        flow_log_prob(target, x, sigma_min=0.0, sigma_max=1.0)
    with pytest.raises(ValueError, match="0 < sigma_min < sigma_max"):
        flow_log_prob(target, x, sigma_min=2.0, sigma_max=1.0)
    with pytest.raises(TypeError, match="denoiser must be callable"):
        flow_log_prob("edm", x, **kw)
    with pytest.raises(ValueError, match=r"x must be a floating torch.Tensor of shape \(n, d\)"):
        flow_log_prob(target, x[0], **kw)
    with pytest.raises(TypeError, match=r"x must be a floating torch.Tensor of shape \(n, d\)"):
        flow_log_prob(target, x.tolist(), **kw)
    with pytest.raises(ValueError, match="x must be finite"):
        flow_log_prob(target, torch.full_like(x, math.nan), **kw)
    with pytest.raises(ValueError, match="must return a tensor of x's shape"):
        flow_log_prob(lambda y, s: y[:, :1], x, **kw)
    with pytest.raises(ValueError, match="not differentiable"):
        flow_log_prob(lambda y, s: target(y.detach(), s), x, **kw)
    with pytest.raises(ValueError, match="n_steps must be even"):
        flow_log_prob(target, x, sigma_min=0.1, sigma_max=1.0, n_steps=3)
    with pytest.raises(ValueError, match="prior_log_prob"):
        flow_log_prob(target, x, prior_log_prob=lambda z: z, **kw)
    with pytest.raises(ValueError, match="method must be one of"):
        flow_log_prob(target, x, method="dopri5", **kw)
    with pytest.raises(ValueError, match="divergence must be one of"):
        flow_log_prob(target, x, divergence="skilling", **kw)
