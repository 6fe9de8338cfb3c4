"""Exact law of 1-D stochastic sampler chains on a grid (labkit.likelihood.sde_chain)."""

import math

import pytest
import torch
from scipy import stats

import labkit
from labkit.likelihood.sde_chain import (_markov_solver, _step_coefficients, chain_kl_1d,
                                         chain_marginal_1d, level_grids)
from labkit.solvers.base import CountingDenoiser

F64 = torch.float64
MU0, V0 = 0.5, 0.64  # target N(MU0, V0): D(x, s) = MU0 + k(s) (x - MU0), k = V0 / (V0 + s^2)


def _gaussian():
    return labkit.Gaussian(torch.tensor([MU0], dtype=F64), torch.tensor([[V0]], dtype=F64))


def _mixture():
    return labkit.GaussianMixture(torch.tensor([[-1.5], [1.0]], dtype=F64),
                                  torch.tensor([[[0.1]], [[0.3]]], dtype=F64),
                                  torch.tensor([0.4, 0.6], dtype=F64))


def _linear_gaussian_recursion(sigmas, solver, eta=1.0, langevin=1.0):
    """Mean and variance of every state of the chain for the Gaussian target.

    Each step is x' = MU0 + a (x - MU0) + std z (the drift is affine for an affine denoiser), so
    mu' = MU0 + a (mu - MU0), v' = a^2 v + std^2, written out per solver from its formula.
    """
    mu, v = 0.0, float(sigmas[0]) ** 2
    out = [(mu, v)]
    for s, sn in zip(sigmas[:-1].tolist(), sigmas[1:].tolist()):
        k = V0 / (V0 + s * s)
        slope_d = (1 - k) / s  # d(x) = (x - D) / s = slope_d (x - MU0)
        if sn == 0:  # every supported solver ends with x_N = D(x_{N-1}, s)
            a, std2 = k, 0.0
        elif solver == "euler_ancestral":
            up = min(sn, eta * math.sqrt(sn ** 2 * (s ** 2 - sn ** 2) / s ** 2))
            down = math.sqrt(sn ** 2 - up ** 2)
            a, std2 = 1 + (down - s) * slope_d, up ** 2
        elif solver == "ddpm":
            r = (sn / s) ** 2
            a, std2 = r + (1 - r) * k, sn ** 2 * (1 - r)
        elif solver == "euler_maruyama":
            h = sn - s
            a, std2 = 1 + (1 + langevin) * h * slope_d, 2 * langevin * s * -h
        mu, v = MU0 + a * (mu - MU0), a * a * v + std2
        out.append((mu, v))
    return out


@pytest.mark.parametrize("solver,options", [("euler_ancestral", {}),
                                            ("euler_ancestral", {"eta": 0.5}),
                                            ("ddpm", {}), ("euler_maruyama", {"langevin": 0.7})])
def test_gaussian_chain_matches_linear_recursion(solver, options):
    sigmas = labkit.grids.karras(8, 0.05, 10.0).to(F64)
    grid = level_grids(sigmas, 801, MU0 - 6.4, MU0 + 6.4)
    chain = chain_marginal_1d(_gaussian(), sigmas, solver, grid=grid, **options)
    exact = _linear_gaussian_recursion(sigmas, solver, **options)
    for i, (mu, v) in enumerate(exact):
        dens = torch.exp(-0.5 * (grid[i] - mu) ** 2 / v) / math.sqrt(2 * math.pi * v)
        # Noisy steps: the trapezoid rule on resolved Gaussians is spectrally accurate (measured
        # 1e-13); 1e-9 of the peak. The final (deterministic) step is a linear interpolation of
        # the pushforward onto the last grid: O(h^2) = (12.8 / 800)^2 / 8 * |p''| ~ 5e-5 of the
        # peak; 1e-3 allowed.
        tol = (1e-9 if i < len(exact) - 1 else 1e-3) * float(dens.max())
        torch.testing.assert_close(chain.densities[i], dens, rtol=0, atol=tol)
    mu, v = exact[-1]
    kl = 0.5 * (v / V0 + (mu - MU0) ** 2 / V0 - 1 + math.log(V0 / v))
    est = chain_kl_1d(_gaussian(), _gaussian(), sigmas, solver, n_points=321,
                      lo=MU0 - 6.4, hi=MU0 + 6.4, **options)
    assert math.isfinite(est.half_width) and est.contains(kl), (est, kl)


def test_kl_bound_holds_and_shrinks_under_refinement():
    # The stated bound |KL_h - KL_h/2| contains the closed form whenever it is finite, and is
    # infinite (no claim) while the fine grid does not resolve the noise.
    sigmas = labkit.grids.karras(8, 0.05, 10.0).to(F64)
    exact = _linear_gaussian_recursion(sigmas, "ddpm")[-1]
    kl = 0.5 * (exact[1] / V0 + (exact[0] - MU0) ** 2 / V0 - 1 + math.log(V0 / exact[1]))
    widths = []
    for n_points in (41, 81, 161):
        est = chain_kl_1d(_gaussian(), _gaussian(), sigmas, "ddpm", n_points=n_points,
                          lo=MU0 - 6.4, hi=MU0 + 6.4)
        assert est.contains(kl)
        widths.append(est.half_width)
    assert widths[0] == math.inf and widths[1] == math.inf and widths[2] < 1e-3
    # Mixture: two finite bounds, nested and shrinking. A priori: for a rule whose error at
    # least halves when h does (any order >= 1; the trapezoid rule is O(h^2) on resolved
    # kernels), |KL_h - KL_h/2| >= e(h) - e(h/2) >= e(h/2), so the coarse interval (G = 201,
    # value KL_h/2) contains KL_h/4 (the fine value, G = 401); and O(h^2) makes the next
    # difference at most about a quarter of this one (the spectral rate of resolved kernels
    # makes it far smaller). Negative control: the same containment check rejects the KL
    # to a target whose means are shifted by 0.2 (a change of about 0.2^2 / 2 times the
    # Fisher information, E[1 / variance] ~ 6, i.e. ~0.1, far outside a converged bound).
    sigmas = labkit.grids.karras(10, 0.02, 10.0).to(F64)
    coarse = chain_kl_1d(_mixture(), _mixture(), sigmas, "euler_ancestral", n_points=201,
                         lo=-4, hi=4)
    fine = chain_kl_1d(_mixture(), _mixture(), sigmas, "euler_ancestral", n_points=401,
                       lo=-4, hi=4)
    assert math.isfinite(coarse.half_width) and fine.half_width <= coarse.half_width / 4
    assert coarse.contains(fine.value)
    m = _mixture()
    shifted = labkit.GaussianMixture(m.means + 0.2, m.covs, m.weights)
    wrong = chain_kl_1d(_mixture(), shifted, sigmas, "euler_ancestral", n_points=401,
                        lo=-4, hi=4)
    assert not coarse.contains(wrong.value), (coarse, wrong)


def _bin_probabilities(chain, edges):
    """Bin masses of the final law: cumulative trapezoid on its grid, interpolated at edges."""
    y, p = chain.grids[-1], chain.densities[-1]
    cdf = torch.cat([torch.zeros(1, dtype=F64), torch.cumsum(0.5 * (p[1:] + p[:-1]) * (y[1:] - y[:-1]), 0)])
    at = torch.from_numpy(__import__("numpy").interp(edges.numpy(), y.numpy(), cdf.numpy()))
    return at[1:] - at[:-1]


def test_mixture_chain_matches_monte_carlo_histogram():
    # 30000 runs of labkit.sample vs the grid law: Pearson chi-square over 30 bins, rejected
    # at the 0.999 quantile (false-failure rate 1e-3, fixed seed). Negative control: the
    # target's own law (what a perfect sampler gives) is rejected: 4 coarse steps are biased.
    target = _mixture()
    sigmas = labkit.grids.karras(4, 0.05, 10.0).to(F64)
    chain = chain_marginal_1d(target, sigmas, "euler_ancestral",
                              grid=level_grids(sigmas, 1001, -4, 4))
    gen = torch.Generator().manual_seed(7)
    n = 30000
    x = sigmas[0] * torch.randn(n, 1, dtype=F64, generator=gen)
    samples, _ = labkit.sample(target, x, sigmas, "euler_ancestral", generator=gen)
    edges = torch.linspace(-3.0, 3.0, 31, dtype=F64)
    counts = torch.histc(samples[:, 0], bins=30, min=-3.0, max=3.0)
    threshold = stats.chi2.ppf(0.999, df=29)
    probs = _bin_probabilities(chain, edges)
    assert float(probs.sum()) > 0.999
    chi2 = float(((counts - n * probs) ** 2 / (n * probs)).sum())
    assert chi2 < threshold, chi2
    w, m, s = torch.tensor([0.4, 0.6]), torch.tensor([-1.5, 1.0]), torch.tensor([0.1, 0.3]).sqrt()
    cdf = (w * torch.special.ndtr((edges[:, None].float() - m) / s)).sum(1).double()
    target_probs = cdf[1:] - cdf[:-1]
    chi2_target = float(((counts - n * target_probs) ** 2 / (n * target_probs)).sum())
    assert chi2_target > 3 * threshold, chi2_target


@pytest.mark.parametrize("solver,options,match", [
    ("dpmpp_2m_sde", {}, "not Markov"),
    ("dpmpp_3m_sde", {}, "not Markov"),
    ("dpmpp_sde", {}, "not Gaussian"),
    ("langevin_pc", {"n_corrector": 1}, "depends on its draw"),
    ("heun", {}, "sampler_log_prob"),
    ("euler_ancestral", {"eta": 0.0}, "sampler_log_prob"),
    ("dpmpp_2s_ancestral", {"noise_sampler": lambda s, t: torch.zeros(3, 1)}, "noise_sampler"),
    ("heun", {"s_churn": 1.0}, "not supported"),
])
def test_unsupported_solvers_raise(solver, options, match):
    sigmas = labkit.grids.karras(4, 0.05, 10.0).to(F64)
    with pytest.raises(ValueError, match=match):
        chain_marginal_1d(_gaussian(), sigmas, solver, grid=level_grids(sigmas, 11, -3, 3),
                          **options)


def test_other_one_draw_solvers_conserve_mass():
    # dpmpp_2s_ancestral and langevin_pc without corrector are one-draw Markov steps too; their
    # chain keeps unit mass (1e-3: off-grid tails at 8 sigma plus the O(h^2) interpolation of the last step).
    sigmas = labkit.grids.karras(6, 0.05, 10.0).to(F64)
    grid = level_grids(sigmas, 1201, -4, 4)  # resolves the expanding steps (no warning)
    for solver, options in (("dpmpp_2s_ancestral", {}), ("langevin_pc", {"n_corrector": 0})):
        chain = chain_marginal_1d(_mixture(), sigmas, solver, grid=grid, **options)
        torch.testing.assert_close(chain.mass, torch.ones_like(chain.mass), rtol=0, atol=1e-3)


def test_unresolved_grid_warns():
    sigmas = labkit.grids.karras(8, 0.05, 10.0).to(F64)
    with pytest.warns(UserWarning, match="grid spacing"):
        chain_marginal_1d(_gaussian(), sigmas, "ddpm", grid=level_grids(sigmas, 21, -3, 3))


def test_float32_grid_follows_dtype():
    # A float64 level grid cast to float32 is uniform to a few float32 ulps: accepted, and the
    # chain runs in float32. Tolerance a priori: each step's (G, G) product sums G terms with
    # relative round-off <= G eps32, over N noisy steps: N G eps32 of the peak (8 * 401 *
    # 1.2e-7 = 3.8e-4). Negative control: one node moved by 1% of the spacing is rejected.
    sigmas = labkit.grids.karras(8, 0.05, 10.0).to(F64)
    grid = level_grids(sigmas, 401, MU0 - 6.4, MU0 + 6.4)
    c64 = chain_marginal_1d(_gaussian(), sigmas, "ddpm", grid=grid)
    c32 = chain_marginal_1d(_gaussian(), sigmas, "ddpm", grid=grid.float())
    assert c32.densities.dtype == c32.noise_scales.dtype == torch.float32
    assert c32.noise_scales.device == grid.device
    tol = 8 * 401 * torch.finfo(torch.float32).eps * float(c64.densities[:-1].max())
    torch.testing.assert_close(c32.densities[:-1].double(), c64.densities[:-1], rtol=0, atol=tol)
    bad = grid.float().clone()
    bad[3, 10] += 0.01 * float(bad[3, 1] - bad[3, 0])
    with pytest.raises(ValueError, match="uniform"):
        chain_marginal_1d(_gaussian(), sigmas, "ddpm", grid=bad)


def test_negative_noise_scale_is_its_absolute_value():
    # s z and -s z have the same law: a step with a negative noise scale (euler_ancestral with
    # its s_noise forced to -1) has the coefficients of s_noise = +1.
    sigmas = labkit.grids.karras(4, 0.05, 10.0).to(F64)
    x = torch.linspace(-5, 5, 11, dtype=F64)
    plus = _markov_solver("euler_ancestral", {})
    minus = _markov_solver("euler_ancestral", {})
    minus.s_noise = -1.0
    model = CountingDenoiser(_gaussian())
    m1, s1, _ = _step_coefficients(plus, model, x, 1, sigmas)
    m2, s2, _ = _step_coefficients(minus, model, x, 1, sigmas)
    assert bool((s1 > 0).all())
    torch.testing.assert_close(m2, m1, rtol=0, atol=0)
    torch.testing.assert_close(s2, s1, rtol=0, atol=1e-15)  # a few ulps of s ~ 0.5


def test_expanding_step_is_flagged_unresolved():
    # Between two modes (variance 0.1 at +-2) a late euler_ancestral step expands, m' up to ~8:
    # the kernel N(y; m(x), s^2) has width s / |m'| in x. On 161 points every step has s >= h
    # (a noise-scale-only check passes), but step 3's width in x is 0.13 h. The warning is
    # right: a resolved kernel (>= 0.7 h) gives densities accurate to ~1e-4 of the peak (the
    # trapezoid's 2 exp(-2 pi^2 0.49)), so grids of G and 2G - 1 points must agree to that at
    # the shared nodes; they do after the resolved steps 0-2 and miss by more after step 3.
    target = labkit.GaussianMixture(torch.tensor([[-2.0], [2.0]], dtype=F64),
                                    torch.tensor([[[0.1]], [[0.1]]], dtype=F64))
    sigmas = labkit.grids.karras(5, 0.1, 10.0).to(F64)
    grid = level_grids(sigmas, 161, -4, 4)
    step, model = _markov_solver("euler_ancestral", {}), CountingDenoiser(target)
    for i in range(4):
        _, scale, _ = _step_coefficients(step, model, grid[i], i, sigmas)
        h = max(float(grid[i, 1] - grid[i, 0]), float(grid[i + 1, 1] - grid[i + 1, 0]))
        assert float(scale.min()) >= 0.7 * h
    with pytest.warns(UserWarning, match="step 3: kernel width"):
        coarse = chain_marginal_1d(target, sigmas, "euler_ancestral", grid=grid)
    assert [i for i, _, _ in coarse.unresolved] == [3]
    with pytest.warns(UserWarning, match="step 3"):  # 0.24 h' at twice the points: still flagged
        fine = chain_marginal_1d(target, sigmas, "euler_ancestral",
                                 grid=level_grids(sigmas, 321, -4, 4))
    diff = (coarse.densities - fine.densities[:, ::2]).abs().amax(1) / fine.densities.amax(1)
    assert bool((diff[1:4] < 1e-4).all()) and float(diff[4]) > 1e-4, diff
    est = chain_kl_1d(target, target, sigmas, "euler_ancestral", n_points=161, lo=-4, hi=4)
    assert est.half_width == math.inf
