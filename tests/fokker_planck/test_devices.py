"""The Fokker–Planck tools agree across devices and dtypes within stated tolerances.

Every test runs on the CPU; on a machine with a CUDA GPU the same tests also run there and compare
against the CPU float64 result (the device list is built at collection, so nothing is skipped on
a CPU-only machine). Tolerances:

* float64 on either device: the same formulas summed in a different order by different kernels;
  the residual takes d + 2 autograd passes through the mixture's log-sum-exp, each adding a few
  ulps (1e-16) relative to the largest term, so results agree to ~1e-13 of their scale. We allow
  1e-10 of the scale.
* float32: rounding 6e-8 per operation; the residual combines second derivatives whose terms are
  up to ~10x the result (|s|^2 and div s nearly cancel against ds/dsigma), so ~1e-5 of the scale.
  We allow 1e-4 of the scale (a wrong formula or a lost device transfer is off by O(1)).
"""

import pytest
import torch

import labkit
from labkit.fokker_planck import (DivergenceFreePerturbation, GradientPerturbation,
                                  RotationalPerturbation, continuity_1d, continuity_2d,
                                  fokker_planck_1d, fokker_planck_2d,
                                  fp_residual, gaussian_bump)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DTYPES = [torch.float64, torch.float32]
TOL = {torch.float64: 1e-10, torch.float32: 1e-4}


def _mixture():
    means = torch.tensor([[-1.0, 0.0], [1.2, 0.6], [0.0, -1.3]], dtype=torch.float64)
    covs = torch.stack([torch.tensor([[0.4, 0.1], [0.1, 0.3]]), 0.2 * torch.eye(2),
                        torch.tensor([[0.5, -0.2], [-0.2, 0.4]])]).double()
    return labkit.GaussianMixture(means, covs, torch.tensor([0.3, 0.5, 0.2]).double())


def _points():
    g = torch.Generator().manual_seed(3)
    x = 1.5 * torch.randn(40, 2, generator=g, dtype=torch.float64)
    sigma = 0.3 + torch.rand(40, generator=g, dtype=torch.float64)
    return x, sigma


def _wrong_scores(target):
    rot = torch.tensor([[0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    return {
        "exact": target,
        "gradient": GradientPerturbation(target, gaussian_bump(torch.tensor([0.5, 0.0]), 0.8),
                                         scale=0.7),
        "rotational": RotationalPerturbation(target, rot, scale=0.4, sigma_band=(0.1, 3.0)),
        "divergence_free": DivergenceFreePerturbation(target, rot, scale=0.5),
    }


def _rel(a, b):
    return float((a.double().cpu() - b).abs().max() / b.abs().max().clamp_min(1e-300))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["gradient", "rotational", "divergence_free"])
def test_wrong_scores_agree_with_cpu_float64(device, dtype, kind):
    x, sigma = _points()
    ref = _wrong_scores(_mixture())[kind].score(x, sigma)
    got = _wrong_scores(_mixture())[kind].score(x.to(device, dtype), sigma.to(device, dtype))
    assert got.device.type == device and got.dtype == dtype
    assert _rel(got, ref) <= TOL[dtype]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["exact", "gradient", "rotational"])
def test_fp_residual_agrees_with_cpu_float64(device, dtype, kind):
    x, sigma = _points()
    score = _wrong_scores(_mixture())[kind].score
    ref = fp_residual(score, x, sigma)
    got = fp_residual(score, x.to(device, dtype), sigma.to(device, dtype))
    assert got.device.type == device and got.dtype == dtype
    # The exact score's residual is zero up to round-off: compare on the scale of the score.
    scale = ref.abs().max() if kind != "exact" else score(x, sigma).abs().max()
    assert float((got.double().cpu() - ref).abs().max() / scale) <= TOL[dtype]


@pytest.mark.parametrize("device", DEVICES)
def test_grid_solvers_accept_a_score_on_any_device(device):
    """The grid solvers run in float64 on the CPU; a score computed on another device (or in
    float32) only enters through its values at the faces, so the marginals agree with the CPU
    float64 run to the score's own precision."""
    target = labkit.GaussianMixture(torch.tensor([[-1.5], [1.0]], dtype=torch.float64),
                                    torch.tensor([[[0.1]], [[0.3]]], dtype=torch.float64),
                                    torch.tensor([0.4, 0.6], dtype=torch.float64))
    grid = torch.linspace(-10, 10, 200, dtype=torch.float64)
    q0 = target.log_prob(grid[:, None], 2.0).exp()
    sigmas = [2.0, 0.5]

    def on_device(x, s):
        return target.score(x.to(device, torch.float32), s).to(torch.float64)

    for solve in (continuity_1d, fokker_planck_1d):
        ref = solve(q0, grid, sigmas, target.score).density[-1]
        got = solve(q0, grid, sigmas, on_device).density[-1]
        # float32 scores (relative error ~1e-7) move the L1 density by ~1e-6 over ~100 steps
        assert float((got - ref).abs().sum() * (grid[1] - grid[0])) <= 1e-4


@pytest.mark.parametrize("device", DEVICES)
def test_2d_grid_solvers_accept_a_score_on_any_device(device):
    """As above on a coarse 2-D grid (41 x 39 cells, ~40 / 85 steps)."""
    target = _mixture()
    gx = torch.linspace(-8, 8, 41, dtype=torch.float64)
    gy = torch.linspace(-7.6, 7.6, 39, dtype=torch.float64)
    q0 = target.log_prob(torch.cartesian_prod(gx, gy), 1.5).exp().reshape(41, 39)
    cell = float((gx[1] - gx[0]) * (gy[1] - gy[0]))

    def on_device(x, s):
        return target.score(x.to(device, torch.float32), s).to(torch.float64)

    for solve in (continuity_2d, fokker_planck_2d):
        ref = solve(q0, gx, gy, [1.5, 0.8], target.score).density[-1]
        got = solve(q0, gx, gy, [1.5, 0.8], on_device).density[-1]
        assert float((got - ref).abs().sum()) * cell <= 1e-4  # same budget as in 1-D
