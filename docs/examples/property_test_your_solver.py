# %% [markdown]
# # Property-test your own solver with `labkit.testing`
#
# A solver is a `labkit.solvers.base.Solver` subclass with one `step`. Here: Ralston's
# second-order Runge-Kutta rule in sigma (stage at 2/3 of the step; two denoiser calls per
# step, one on the step to 0). (The explicit midpoint rule measures 3.0, not 2, on this
# Gaussian: a single Gaussian can super-converge, so check a mixture too, e.g. against
# `labkit.solvers.reference.reference_flow`.)
# We check (1) its declared order against the exact Gaussian flow map, and (2) properties
# over random mixtures and grids drawn by `labkit.testing.strategies`.
#
# Run it: `python docs/examples/property_test_your_solver.py` (it asserts and prints the order).

# %%
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import labkit
from labkit.solvers.base import Solver, ode_derivative
from labkit.solvers.reference import gaussian_flow_map
from labkit.testing import assert_order, convergence_order
from labkit.testing.strategies import gaussian_mixtures, sigma_grids


class Ralston(Solver):
    """Ralston's rule on dx/dsigma = (x - D(x, sigma)) / sigma. Order 2; 2 NFE per step.

    ``x_{i+1} = x_i + h (d_i / 4 + 3 d(x_i + 2 h d_i / 3, sigma_i + 2 h / 3) / 4)``,
    ``h = sigma_{i+1} - sigma_i``; the step to 0 is Euler (one call, returns ``D``).
    """

    name = "ralston"
    order = 2.0
    nfe_per_step = 2

    def step(self, denoiser, x, i, sigmas, generator):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        d = ode_derivative(x, sigma, denoiser(x, sigma))
        if float(sigma_next) == 0:
            return x + d * (sigma_next - sigma)       # Euler to 0: returns D(x, sigma)
        h = sigma_next - sigma
        sigma_2, x_2 = sigma + 2 * h / 3, x + d * (2 * h / 3)
        d_2 = ode_derivative(x_2, sigma_2, denoiser(x_2, sigma_2))
        return x + h * (d / 4 + 3 * d_2 / 4)


# %% [markdown]
# ## 1. The declared order, against the exact flow of a Gaussian
# Grids end above 0 (at sigma_min), so the pure ODE error is measured.

# %%
def order_check():
    mean = torch.tensor([1.0, -0.5])
    cov = torch.tensor([[1.0, 0.3], [0.3, 0.5]])
    target = labkit.Gaussian(mean, cov)
    x = 2.0 * torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    steps = [16, 32, 64, 128]
    errors = []
    for n in steps:
        sigmas = labkit.grids.karras(n + 1, 0.05, 2.0)[:-1]          # drop the final 0
        out, info = labkit.sample(target, x, sigmas, solver=Ralston())
        assert info.nfe == 2 * n
        exact = gaussian_flow_map(mean, cov, x, 2.0, 0.05)
        errors.append(float((out - exact).norm(dim=1).max()))
    h = [1 / n for n in steps]
    assert_order(errors, h, expected_order=Ralston.order, tol=0.25)
    return convergence_order(errors, h)


# %% [markdown]
# ## 2. Properties over random targets and grids (hypothesis)
# Finite output of the input's shape and dtype, and the NFE accounting the class declares.

# %%
@settings(max_examples=10, deadline=None, derandomize=True)
@given(target=gaussian_mixtures(dim=st.integers(1, 3), max_components=3),
       sigmas=sigma_grids(1, 8), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_ralston_properties(target, sigmas, dtype):
    x = (float(sigmas[0]) * torch.randn(4, target.dim, dtype=torch.float64)).to(dtype)
    out, info = labkit.sample(target, x, sigmas, solver=Ralston())
    assert out.shape == x.shape and out.dtype == dtype
    assert bool(torch.isfinite(out).all())
    n_steps = len(sigmas) - 1
    assert info.nfe == 2 * n_steps - (float(sigmas[-1]) == 0)


# %%
if __name__ == "__main__":
    fit = order_check()
    print(f"ralston: observed order {fit.order:.3f}, 95% interval "
          f"({fit.interval[0]:.3f}, {fit.interval[1]:.3f})")
    test_ralston_properties()
    print("properties: ok")
