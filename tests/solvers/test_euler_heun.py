"""Euler and Heun against the exact Gaussian probability-flow map."""

import numpy as np
import pytest
import torch

from labkit import grids
from labkit.solvers import SOLVERS, sample
from labkit.solvers.reference import gaussian_flow_map

MEAN = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
# A low-rank covariance: the flow must also be exact on its null space.
_A = torch.tensor([[1.0, 0.3], [0.2, -0.7], [0.5, 0.4]], dtype=torch.float64)
COV = _A @ _A.T


def gaussian_denoiser(x, sigma):
    """Exact denoiser of N(MEAN, COV): m + S (S + sigma^2 I)^{-1} (x - m), sigma per row."""
    m, s = MEAN.to(x), COV.to(x)
    eye = torch.eye(3, dtype=x.dtype)
    c = s + sigma[:, None, None] ** 2 * eye
    return m + torch.linalg.solve(c, (x - m)[..., None])[..., 0] @ s


def global_error(solver, n_steps, sigma_min=0.05, sigma_max=20.0):
    g = torch.Generator().manual_seed(0)
    sigmas = grids.karras(n_steps + 1, sigma_min, sigma_max)[:-1]  # no final zero: pure ODE
    x0 = sigma_max * torch.randn(64, 3, generator=g, dtype=torch.float64)
    out, info = sample(gaussian_denoiser, x0, sigmas, solver=solver)
    exact = gaussian_flow_map(MEAN, COV, x0, sigma_max, sigma_min)
    return float((out - exact).norm(dim=1).max()), info


def fitted_order(errors, steps):
    return -np.polyfit(np.log(steps), np.log(errors), 1)[0]


@pytest.mark.parametrize("name", ["euler", "heun"])  # the others: test_ode_multistep.py
def test_declared_order(name):
    steps = np.array([16, 32, 64, 128])
    errors = [global_error(name, int(n))[0] for n in steps]
    # Asymptotic regime: the fitted slope matches the declared order to within 0.15 (the
    # leading-order error constant still drifts slightly at 16 steps).
    assert abs(fitted_order(errors, steps) - SOLVERS[name].order) < 0.15


def test_order_check_flags_a_mislabelled_solver():
    """Negative control: Euler's errors do not pass as second order."""
    steps = np.array([16, 32, 64, 128])
    errors = [global_error("euler", int(n))[0] for n in steps]
    assert abs(fitted_order(errors, steps) - 2.0) > 0.5


@pytest.mark.parametrize("name, nfe", [("euler", 10), ("heun", 19)])
def test_nfe_counts_with_final_euler_step(name, nfe):
    sigmas = grids.karras(10, 0.01, 10.0)
    x = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    _, info = sample(gaussian_denoiser, 10.0 * x, sigmas, solver=name)
    # Heun: 2 evaluations per step, except the last step to sigma = 0, which is Euler.
    assert info.nfe == nfe


def test_heun_matches_edm_algorithm_1_by_hand():
    sigmas = torch.tensor([3.0, 1.0, 0.0], dtype=torch.float64)
    x = torch.tensor([[0.3, -1.0, 2.0]], dtype=torch.float64)
    out, _ = sample(gaussian_denoiser, x, sigmas, solver="heun")
    s = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731
    d0 = (x - gaussian_denoiser(x, s(3.0))) / 3.0
    x1 = x + (1.0 - 3.0) * d0
    d1 = (x1 - gaussian_denoiser(x1, s(1.0))) / 1.0
    x1 = x + (1.0 - 3.0) * (d0 + d1) / 2
    expected = gaussian_denoiser(x1, s(1.0))  # Euler step to 0 lands on the denoiser output
    torch.testing.assert_close(out, expected, rtol=1e-14, atol=1e-14)


def test_float32_agrees_with_float64():
    sigmas = grids.karras(32, 0.01, 20.0)
    x = 20.0 * torch.randn(16, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    out64, _ = sample(gaussian_denoiser, x, sigmas)
    out32, _ = sample(gaussian_denoiser, x.float(), sigmas)
    assert out32.dtype == torch.float32
    # 63 evaluations each with relative round-off ~1e-7 on values of size ~20.
    torch.testing.assert_close(out32.double(), out64, rtol=0, atol=2e-4)


def test_trajectory_and_callback():
    sigmas = grids.karras(5, 0.1, 5.0)
    seen = []
    x = torch.zeros(2, 3, dtype=torch.float64)
    out, info = sample(gaussian_denoiser, x, sigmas, solver="euler", record_trajectory=True,
                       callback=lambda d: seen.append(d["i"]))
    assert seen == [0, 1, 2, 3, 4]
    assert len(info.trajectory) == 6
    torch.testing.assert_close(info.trajectory[-1], out)


@pytest.mark.parametrize("kwargs, err, match", [
    (dict(solver="nope"), ValueError, "solver must be one of"),
    (dict(solver="euler", churn=1.0), TypeError, "unknown options"),
    (dict(sigmas=torch.tensor([1.0, 2.0])), ValueError, "decreasing"),
    (dict(x=torch.full((2, 3), float("nan"))), ValueError, "x must be finite"),
    (dict(denoiser=3), TypeError, "denoiser must be callable"),
    (dict(denoiser=lambda x, s: x[:, :2]), ValueError, "denoiser must return"),
])
def test_bad_input(kwargs, err, match):
    args = dict(denoiser=gaussian_denoiser, x=torch.zeros(2, 3, dtype=torch.float64),
                sigmas=grids.karras(4, 0.1, 1.0))
    args.update(kwargs)
    with pytest.raises(err, match=match):
        sample(args.pop("denoiser"), args.pop("x"), args.pop("sigmas"), **args)


def test_nan_from_denoiser_is_reported():
    with pytest.raises(FloatingPointError, match="NaN"):
        sample(lambda x, s: x * float("nan"), torch.ones(2, 3, dtype=torch.float64),
               grids.karras(4, 0.1, 1.0))


def test_flow_map_is_a_group():
    """Reference check: flowing a -> b -> c equals a -> c, and the map is identity at a = b."""
    x = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    ab = gaussian_flow_map(MEAN, COV, x, 5.0, 1.0)
    torch.testing.assert_close(gaussian_flow_map(MEAN, COV, ab, 1.0, 0.2),
                               gaussian_flow_map(MEAN, COV, x, 5.0, 0.2), rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(gaussian_flow_map(MEAN, COV, x, 2.0, 2.0), x)
