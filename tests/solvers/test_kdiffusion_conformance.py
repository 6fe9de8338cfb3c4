"""labkit's solvers reproduce k-diffusion's numbers (the naming rule of ARCHITECTURE.md).

The fixture ``kdiffusion_reference.json`` holds k-diffusion's outputs for a closed-form mixture
denoiser, a seeded ``x`` and two grids (see ``make_kdiffusion_reference.py``, which wrote it).
The live test recomputes them with k-diffusion itself; it runs only when k-diffusion is
available: set ``KDIFFUSION_SAMPLING=/path/to/k_diffusion/sampling.py`` (the wheel unpacked, as
in the script's docstring) or install ``k-diffusion`` in the environment. CI runs the fixture
tests only.
"""


import pytest
import torch

import labkit
import make_kdiffusion_reference as ref  # sibling script; pytest puts tests/solvers on sys.path
from labkit.solvers import Euler, Heun, sample
from labkit.solvers.dpm2 import DPM2
from labkit.solvers.dpmpp_2m import DPMpp2M
from labkit.solvers.lms import LMS

FIXTURE = ref.load_fixture()

SOLVERS = {"euler": Euler, "heun": Heun, "dpm_2": DPM2, "dpmpp_2m": DPMpp2M,
           **{f"lms_order{q}": (lambda q=q: LMS(order=q)) for q in ref.LMS_ORDERS}}
CASES = [(grid, key) for grid in sorted(FIXTURE["grids"]) for key in sorted(SOLVERS)]
# Both sides evaluate the same float64 formulas in a different association order (e.g. LMS's
# Gauss-Legendre weights vs QUADPACK, sigma_next / sigma vs exp(-t_next) / exp(-t)): a few ulp
# per operation over <= 16 denoiser calls whose Lipschitz constants on these grids are O(10).
RTOL = ATOL = 1e-12


def _x():
    return torch.tensor(FIXTURE["x"], dtype=torch.float64)


def test_fixture_inputs_are_the_scripts():
    """The fixture was written from the inputs the script defines now (same seed and grid)."""
    assert FIXTURE["x_seed"] == ref.X_SEED
    torch.testing.assert_close(ref.inputs()["x"], _x(), rtol=0, atol=0)
    assert FIXTURE["grids"]["custom"] == ref.CUSTOM_GRID
    assert FIXTURE["denoiser"] == {"means": ref.MEANS, "variances": ref.VARIANCES,
                                   "weights": ref.WEIGHTS}
    assert set(FIXTURE["outputs"]["karras"]) == set(SOLVERS)


@pytest.mark.parametrize("grid, key", CASES)
def test_matches_kdiffusion_fixture(grid, key):
    sigmas = torch.tensor(FIXTURE["grids"][grid], dtype=torch.float64)
    out, info = sample(ref.mixture_denoiser, _x(), sigmas, solver=SOLVERS[key]())
    expected = FIXTURE["outputs"][grid][key]
    torch.testing.assert_close(out, torch.tensor(expected["x"], dtype=torch.float64),
                               rtol=RTOL, atol=ATOL)
    assert info.nfe == expected["nfe"]


def test_conformance_check_detects_planted_defects():
    """Negative control: DPM-2 with its midpoint at the arithmetic (not log) mean misses the
    fixture by far more than the tolerance; so does DPM++(2M) run on a perturbed grid."""

    class ArithmeticMidpoint(DPM2):
        def step(self, denoiser, x, i, sigmas, generator):
            s, s_next = sigmas[i], sigmas[i + 1]
            d = (x - denoiser(x, s)) / s
            if float(s_next) == 0:
                return x + d * (s_next - s)
            mid = (s + s_next) / 2
            x_mid = x + d * (mid - s)
            return x + (x_mid - denoiser(x_mid, mid)) / mid * (s_next - s)

    sigmas = torch.tensor(FIXTURE["grids"]["karras"], dtype=torch.float64)
    for solver, grid, key in [(ArithmeticMidpoint(), sigmas, "dpm_2"),
                              (DPMpp2M(), sigmas * (1 + 1e-9), "dpmpp_2m")]:
        out, _ = sample(ref.mixture_denoiser, _x(), grid, solver=solver)
        expected = torch.tensor(FIXTURE["outputs"]["karras"][key]["x"], dtype=torch.float64)
        with pytest.raises(AssertionError):
            torch.testing.assert_close(out, expected, rtol=RTOL, atol=ATOL)


def test_labkit_mixture_target_gives_the_same_numbers():
    """The inline reference denoiser is labkit's ``GaussianMixture``: conformance carries over
    to labkit's own target (both are exact; 1e-10 allows for their different formulas)."""
    mix = labkit.GaussianMixture(torch.tensor(ref.MEANS, dtype=torch.float64),
                                 torch.tensor(ref.VARIANCES, dtype=torch.float64),
                                 weights=ref.WEIGHTS)
    sigmas = torch.tensor(FIXTURE["grids"]["karras"], dtype=torch.float64)
    for key in ("dpm_2", "lms_order4", "dpmpp_2m"):
        out, _ = sample(mix, _x(), sigmas, solver=SOLVERS[key]())
        expected = torch.tensor(FIXTURE["outputs"]["karras"][key]["x"], dtype=torch.float64)
        torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


def test_live_against_kdiffusion():
    sampling = ref.live_sampling()
    data = ref.inputs(sampling)
    torch.testing.assert_close(data["grids"]["karras"],
                               torch.tensor(FIXTURE["grids"]["karras"], dtype=torch.float64),
                               rtol=0, atol=0)
    for grid, sigmas in data["grids"].items():
        live = ref.run_reference(sampling, data["x"], sigmas)
        for key, expected in live.items():
            out, info = sample(ref.mixture_denoiser, data["x"], sigmas, solver=SOLVERS[key]())
            torch.testing.assert_close(out, torch.tensor(expected["x"], dtype=torch.float64),
                                       rtol=RTOL, atol=ATOL)
            assert info.nfe == expected["nfe"], (grid, key)
